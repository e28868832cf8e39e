# -*- test-case-name: tests.test_server -*-
"""
The running server as one service: the handler every listener shares, the
listeners, the TLS policy, and reloading all of it without a restart.

L{ServerService.reload} (SIGHUP under twistd) re-reads the zones and the
certificates.  The zone files are read, checked and compiled in a thread
while the old zones go on answering, then swapped in at once; a SIGHUP
during a reload asks for one more after it.  What reads cleanly replaces what was served, for new queries
and new handshakes; open connections and TLS sessions go on.  What fails to
read leaves the old data serving, and the error is logged.  Each zone is
read on its own (L{dnstls.zones.zoneset}): one broken zone file keeps its own old
data, and the others are reloaded; with C{--strict-zones} any broken file
keeps every zone as it was.
"""

from __future__ import annotations

import datetime
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnstls import statedir
from dnstls.certs import GENERATED_CERT, Credential, load_credential
from dnstls.errors import StartupError, ZoneError
from dnstls.handler import Handler
from dnstls.oneatatime import OneAtATime
from dnstls.ready import Ready, ReadyChannel
from dnstls.transport.listen import ListeningService
from dnstls.transport.tls import TLSPolicy
from dnstls.zones import background
from dnstls.zones.zoneset import ZoneRead, ZoneReport, ZoneSet

_T = TypeVar("_T")


@dataclass(frozen=True)
class CredentialSources:
    """
    Where the TLS certificates come from: PEM certificate and key pairs, or
    failing those the self-signed default kept in a state directory.
    """

    pairs: tuple[tuple[str, str], ...]
    state_dir: Path
    names: tuple[str, ...] = field(default=("localhost",))

    def load(self) -> list[Credential]:
        """
        Read every credential, the default one first.

        @raise StartupError: if a file cannot be read or used.
        """
        if self.pairs:
            return [load_credential(cert, key) for cert, key in self.pairs]
        return [statedir.start(self.state_dir, self.names)]

    def reload(self, served: Sequence[Credential]) -> list[Credential]:
        """
        Read every credential again, given those C{served}: a generated
        default whose files are gone is kept (see L{dnstls.statedir}).

        @raise StartupError: if a file cannot be read or used.
        """
        if self.pairs:
            return self.load()
        generated = str(self.state_dir / GENERATED_CERT)
        kept = next((c for c in served if c.source == generated), None)
        return [statedir.reload(self.state_dir, self.names, kept)]


class ServerService(MultiService):
    """
    The whole server, as a service: start it to serve.

    @ivar handler: the query handler every listener shares.
    @ivar listening: the listeners; their ports once started.
    @ivar tls: the TLS policy of the TLS listeners, if there are any.
    """

    log = Logger()

    def __init__(
        self,
        handler: Handler,
        listening: ListeningService,
        zones: ZoneSet | None = None,
        tls: TLSPolicy | None = None,
        credentials: CredentialSources | None = None,
        reactor: Any = None,
        ticket_rotation: float = 0,
        strict_zones: bool = False,
        ready: ReadyChannel | None = None,
    ) -> None:
        """
        @param zones: the zones loaded, whose reports are logged at start.
        @param ticket_rotation: every this many seconds, give the TLS
            contexts new session-ticket keys (0: never).
        @param strict_zones: reload the zones only when every file loads.
        @param ready: where to report, once the reactor runs, that the
            server serves (C{--ready-fd}).
        """
        super().__init__()
        self.handler = handler
        self.listening = listening
        self.tls = tls
        self._zones = zones
        self._credentials = credentials
        self._reactor = reactor
        self._previous_hup: Callable[[int, FrameType | None], Any] | int | None = None
        self._ticket_rotation = ticket_rotation
        self._strict_zones = strict_zones
        self._rotation: LoopingCall | None = None
        self._ready = ready
        self._reloads: OneAtATime[bool] = OneAtATime(self._reload)
        listening.setServiceParent(self)

    def startService(self) -> None:
        """
        Start listening, log the certificates' pins, one line for each zone
        and the zones served (the last line says the server is ready), and
        reload on SIGHUP; once the reactor runs, report ready.
        """
        super().startService()
        if self.tls is not None:
            self._log_credentials(self.tls.credentials)
        self._log_zones()
        self._catch_hangup()
        if self._ready is not None:
            if self._reactor is not None:
                self._reactor.callWhenRunning(self.report_ready)
            else:
                self.report_ready()
        if self.tls is not None and self._ticket_rotation > 0 and self._reactor is not None:
            self._rotation = LoopingCall(self.rotate_ticket_keys)
            self._rotation.clock = self._reactor
            self._rotation.start(self._ticket_rotation, now=False)

    def report_ready(self) -> None:
        """
        Write the addresses listened on and the zones served to the
        C{--ready-fd} descriptor, and close it.
        """
        if self._ready is not None:
            self._ready.report(Ready.of(self.listening.addresses, self.handler.zones))

    def rotate_ticket_keys(self) -> None:
        """
        New session-ticket keys for new handshakes: the TLS contexts are
        rebuilt with the credentials already loaded.  pyOpenSSL cannot set
        ticket keys, so the old key is not kept for a grace period: a client
        holding an older ticket makes one full handshake.
        """
        if self.tls is not None:
            self.tls.reload(self.tls.credentials)
            self.log.info("TLS session-ticket keys rotated")

    def stopService(self) -> Any:
        """
        Stop listening, close every upstream connection of recursion, and
        give SIGHUP back.
        """
        if self.handler.recursion is not None:
            self.handler.recursion.close()
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        if self._rotation is not None and self._rotation.running:
            self._rotation.stop()
        self._rotation = None
        return super().stopService()

    def _catch_hangup(self) -> None:
        if self._reactor is None or threading.current_thread() is not threading.main_thread():
            return
        if not hasattr(signal, "SIGHUP"):
            return
        reactor = self._reactor

        def hangup(signum: int, frame: FrameType | None) -> None:
            reactor.callFromThread(self.reload)

        self._previous_hup = signal.signal(signal.SIGHUP, hangup)

    def reload(self) -> Deferred[bool]:
        """
        Re-read the zones and the certificates.  Each that reads cleanly is
        served from now on; each that does not leaves the old one serving.
        The zone files are read in a thread of the reactor's pool, the old
        zones answering meanwhile, and swapped in at once when all are
        read; a reload asked for while one runs follows it, once.

        @return: fires with whether everything reloaded.
        """
        if self._reloads.running and not self._reloads.queued:
            self.log.info("reload: a reload is running; another follows it")
        return self._reloads()

    def _reload(self) -> Deferred[bool]:
        """
        One reload: the zones, then the certificates.
        """
        if self._zones is None:
            return succeed(self._reload_credentials())
        zones = self._zones

        def read() -> ZoneRead:
            with background.reading():
                return zones.read()

        reading = self._off_reactor(read)

        def swap(result: ZoneRead | Failure) -> bool:
            ok = self._apply_zones(zones, result)
            return self._reload_credentials() and ok

        return reading.addBoth(swap)

    def _off_reactor(self, work: Callable[[], _T]) -> Deferred[_T]:
        """
        Call C{work} in a thread of the reactor's pool; at once when the
        reactor has none (a memory reactor in tests).
        """
        if IReactorThreads.providedBy(self._reactor):
            return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), work)
        return maybeDeferred(work)

    def _reload_credentials(self) -> bool:
        """
        Re-read the certificates and give them to new TLS handshakes.

        @return: whether they reloaded.
        """
        if self.tls is None or self._credentials is None:
            return True
        try:
            credentials = self._credentials.reload(self.tls.credentials)
            self.tls.reload(credentials)
        except (StartupError, ValueError, OSError) as e:
            self.log.error("reload: keeping the TLS certificates: {error}", error=str(e))
            return False
        except Exception as e:
            self.log.error(
                "reload: keeping the TLS certificates: {error}", error=f"{type(e).__name__}: {e}"
            )
            return False
        self._log_credentials(credentials)
        return True

    def _apply_zones(self, zones: ZoneSet, read: ZoneRead | Failure) -> bool:
        """
        Serve the zone files C{read} (or keep every zone when reading
        failed), log one line for each zone, and hand the handler the new
        zones if any changed.

        @return: whether every zone file loaded.
        """
        if isinstance(read, Failure):
            error = read.value
            if not isinstance(error, ZoneError):
                self.log.failure("reload: keeping the zones served", read)
                return False
            self.log.error("reload: keeping the zones served: {error}", error=str(error))
            return False
        changed = zones.apply(read, atomic=self._strict_zones)
        failed = zones.failures()
        if self._strict_zones and failed:
            for report in failed:
                self._log_zone(report, "reload: ")
            self.log.error(
                "reload: keeping every zone as it was (--strict-zones): {summary}",
                summary=zones.summary(),
            )
            return False
        if changed:
            self.handler.zones = zones.store
        self._log_zones("reload: ")
        return not failed

    def _log_zones(self, prefix: str = "") -> None:
        if self._zones is None:
            self.log.info("{prefix}serving 0 zones", prefix=prefix)
            return
        for report in self._zones.reports:
            self._log_zone(report, prefix)
        self.log.info("{prefix}{summary}", prefix=prefix, summary=self._zones.summary())

    def _log_zone(self, report: ZoneReport, prefix: str) -> None:
        self.log.emit(report.level, "{prefix}{zone}", prefix=prefix, zone=str(report))

    def _log_credentials(self, credentials: Sequence[Credential]) -> None:
        now = datetime.datetime.now(datetime.UTC)
        for credential in credentials:
            self.log.info(
                "TLS certificate {source} for {names}, SPKI pin sha256 {pin}",
                source=credential.source,
                names=",".join(credential.names) or "(no DNS names)",
                pin=credential.pin,
            )
            leaf = credential.leaf
            # Served all the same (pinning clients do not check dates), but
            # clients that verify the chain will refuse it.
            if leaf.not_valid_after_utc < now:
                self.log.warn(
                    "TLS certificate {source} expired on {date}",
                    source=credential.source,
                    date=leaf.not_valid_after_utc.isoformat(),
                )
            elif leaf.not_valid_before_utc > now:
                self.log.warn(
                    "TLS certificate {source} is not valid before {date}",
                    source=credential.source,
                    date=leaf.not_valid_before_utc.isoformat(),
                )


def default_state_dir() -> Path:
    """
    Where generated keys are kept: C{$STATE_DIRECTORY} when set (systemd
    sets it for a service with C{StateDirectory=}), else C{/var/lib/dnstls}
    for root, else C{$XDG_STATE_HOME/dnstls} (C{~/.local/state/dnstls}).
    """
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/dnstls")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "dnstls"
