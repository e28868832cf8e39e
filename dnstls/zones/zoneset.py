# -*- test-case-name: tests.zones.test_zoneset -*-
"""
The zones a server is configured with, loaded one by one as Knot DNS loads
them: a zone file that cannot be read or fails its checks is left out, and
every other zone is served.

L{ZoneSet.load} reads every configured file and says what became of each
zone in a L{ZoneReport}, one log line each:

  - at start-up a zone is L{ZoneState.LOADED}, or L{ZoneState.FAILED} and
    not served: its names get SERVFAIL (EDE 24, Invalid Data), as from Knot
    DNS, never another zone's answer or a resolver's;
  - at a reload a zone served before is L{ZoneState.RELOADED} (its records
    changed: the new data is served) or L{ZoneState.UNCHANGED}; one whose
    file no longer loads is L{ZoneState.KEPT}: its old data goes on
    serving; a new file's zone is L{ZoneState.NEW}; a zone that no file
    holds any more (its file deleted from the zones directory) is
    L{ZoneState.GONE}, and its old data goes on serving until a restart.

L{ZoneSet.load} is L{ZoneSet.read}, which reads, checks and compiles every
file and changes nothing (a reload runs it in a thread), then
L{ZoneSet.apply}, which serves what was read at once.

Two files with one origin: the first that loads (the directory's files in
name order, then the C{--zone} files in the order given) is served, and the
other fails.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dns.name
from twisted.logger import LogLevel

from dnstls.errors import StartupError, ZoneError
from dnstls.zones.authority import AuthoritativeZone
from dnstls.zones.checks import refuse_signed
from dnstls.zones.store import ZoneStore
from dnstls.zones.zonefile import load_zone, named_origin, zone_files


class ZoneState(enum.Enum):
    """
    What a load made of one zone.
    """

    LOADED = "loaded"
    NEW = "new"
    RELOADED = "reloaded"
    UNCHANGED = "unchanged"
    KEPT = "kept"
    FAILED = "failed"
    GONE = "gone"


_LEVELS: dict[ZoneState, LogLevel] = {
    ZoneState.KEPT: LogLevel.error,
    ZoneState.FAILED: LogLevel.error,
    ZoneState.GONE: LogLevel.warn,
}
_INFO: LogLevel = LogLevel.info


@dataclass(frozen=True)
class ZoneReport:
    """
    What a load made of one zone, for its log line.

    @ivar path: the file it was read from (or, served no more, had been).
    @ivar origin: the zone's origin; C{None} for a file that failed and
        names none.
    @ivar serial: the SOA serial served now.
    @ivar previous: the serial served before a reload changed it.
    @ivar error: why the file failed (C{file:line: reason}), or why a zone
        is gone.
    """

    state: ZoneState
    path: Path
    origin: dns.name.Name | None = None
    serial: int | None = None
    previous: int | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        """
        Whether the zone file failed to load.
        """
        return self.state in (ZoneState.KEPT, ZoneState.FAILED)

    @property
    def level(self) -> LogLevel:
        """
        The level of the line: error for a failed file, a warning for a zone
        gone, else info.
        """
        return _LEVELS.get(self.state, _INFO)

    def __str__(self) -> str:
        zone = f"zone {self.origin}" if self.origin is not None else f"zone file {self.path}"
        fields = {"serial": self.serial, "previous": self.previous, "path": self.path, "error": self.error}
        return f"{zone}: " + _TEXTS[self.state].format(**fields)


#: What each line says after C{zone ORIGIN: }.
_TEXTS = {
    ZoneState.LOADED: "serial {serial}, loaded from {path}",
    ZoneState.NEW: "serial {serial}, new, loaded from {path}",
    ZoneState.RELOADED: "serial {previous} -> {serial}, reloaded from {path}",
    ZoneState.UNCHANGED: "serial {serial}, unchanged",
    ZoneState.KEPT: "not reloaded, still serving serial {serial}: {error}",
    ZoneState.FAILED: "not loaded: {error}",
    ZoneState.GONE: "{error}; still serving serial {serial} until a restart",
}


@dataclass(frozen=True)
class ZoneSources:
    """
    Where the zones come from: a directory of C{*.zone} files and single
    files.
    """

    directory: Path
    files: tuple[Path, ...] = ()

    def paths(self) -> list[Path]:
        """
        Every zone file, in the order they are loaded.

        @raise ZoneError: if the directory cannot be listed.
        """
        return [*zone_files(self.directory), *self.files]


@dataclass(frozen=True)
class _Served:
    """
    A zone served, and the file it came from.
    """

    zone: AuthoritativeZone
    path: Path


@dataclass(frozen=True)
class ZoneRead:
    """
    What reading every zone file found, not served yet (L{ZoneSet.read}).

    @ivar served: the zones to serve, by origin.
    @ivar reports: what became of each zone, in the order read.
    """

    served: dict[dns.name.Name, _Served]
    reports: list[ZoneReport]


def read_zone(path: Path) -> AuthoritativeZone:
    """
    Load, check and compile the zone file at C{path}.

    @raise ZoneError: if it cannot be served.
    """
    loaded = load_zone(path)
    refuse_signed(loaded, path)
    return AuthoritativeZone(loaded)


class ZoneSet:
    """
    The zones served, the file each came from, and what the last load made
    of each.

    @ivar sources: where the zones come from.
    @ivar store: the zones served, for the handler: a new object after each
        load that changed any, so that caches of answers can tell.
    @ivar reports: what the last load made of each zone, in the order read.
    """

    def __init__(self, sources: ZoneSources) -> None:
        self.sources = sources
        self.store = ZoneStore()
        self.reports: list[ZoneReport] = []
        self._served: dict[dns.name.Name, _Served] = {}
        self._unavailable: set[dns.name.Name] = set()
        self._started = False

    def load(self, atomic: bool = False) -> bool:
        """
        Read every zone file again: what loads is served from now on, and
        each zone whose file fails goes on serving what it served.

        @param atomic: change nothing if any file fails (C{--strict-zones}).
        @return: whether the zones served changed.
        @raise ZoneError: if the zones directory cannot be listed; nothing
            changes.
        """
        return self.apply(self.read(), atomic)

    def read(self) -> ZoneRead:
        """
        Read, check and compile every zone file, changing nothing: the
        slow half of L{load}, which a reload runs in a thread while the
        zones served go on answering.  Only one read at a time, and no
        L{apply} while it runs.

        @raise ZoneError: if the zones directory cannot be listed.
        """
        paths = self.sources.paths()
        served, reports = _load(paths, self._served, reload=self._started)
        return ZoneRead(served, reports)

    def apply(self, read: ZoneRead, atomic: bool = False) -> bool:
        """
        Serve what C{read} found, at once: the quick half of L{load}.

        @param atomic: change nothing but the reports if any file failed.
        @return: whether the zones served changed.
        """
        self.reports = read.reports
        self._started = True
        if atomic and self.failures():
            return False
        served = read.served
        unavailable = {
            report.origin
            for report in self.reports
            if report.state is ZoneState.FAILED and report.origin is not None
        } - served.keys()
        unchanged = (
            served.keys() == self._served.keys()
            and all(served[origin].zone is self._served[origin].zone for origin in served)
            and unavailable == self._unavailable
        )
        self._served, self._unavailable = served, unavailable
        if not unchanged:
            self.store = ZoneStore((entry.zone for entry in served.values()), unavailable)
        return not unchanged

    def failures(self) -> list[ZoneReport]:
        """
        The reports of the files the last load failed to read.
        """
        return [report for report in self.reports if report.failed]

    def check_startup(self, strict: bool) -> None:
        """
        Stop the start-up if the zones loaded are not enough to serve.

        @param strict: whether any failed file is reason enough
            (C{--strict-zones}).
        @raise StartupError: with C{strict}, for the first file that failed;
            else if there are zone files and none loaded.
        """
        failed = [report.error or str(report) for report in self.failures()]
        if failed and strict:
            raise StartupError(failed[0])
        if failed and not self._served:
            raise StartupError("no zone loaded: " + "; ".join(failed))

    def summary(self) -> str:
        """
        One line: how many zones are served, each with its serial, and how
        many files failed.
        """
        served = sorted(self._served.items())
        text = f"serving {_count(len(served), 'zone')}"
        if served:
            text += ": " + ", ".join(f"{origin} (serial {s.zone.serial})" for origin, s in served)
        failed = len(self.failures())
        if failed:
            text += f"; errors in {_count(failed, 'zone file')}"
        return text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _load(
    paths: list[Path], before: Mapping[dns.name.Name, _Served], reload: bool
) -> tuple[dict[dns.name.Name, _Served], list[ZoneReport]]:
    """
    Read C{paths}, given the zones served C{before}: the zones to serve
    now, and a report for each.
    """
    served: dict[dns.name.Name, _Served] = {}
    reports: list[ZoneReport] = []
    for path in paths:
        try:
            zone = read_zone(path)
        except ZoneError as e:
            reports.append(_failed(path, str(e), before, served))
            continue
        origin = zone.origin
        if origin in served:
            error = f"{path}: zone {origin} is already loaded from {served[origin].path}"
            reports.append(ZoneReport(ZoneState.FAILED, path, origin, error=error))
            continue
        old = before.get(origin)
        if old is not None and old.zone.same_data(zone):
            zone = old.zone
            report = ZoneReport(ZoneState.UNCHANGED, path, origin, zone.serial)
        elif old is not None:
            report = ZoneReport(ZoneState.RELOADED, path, origin, zone.serial, old.zone.serial)
        else:
            state = ZoneState.NEW if reload else ZoneState.LOADED
            report = ZoneReport(state, path, origin, zone.serial)
        served[origin] = _Served(zone, path)
        reports.append(report)
    for origin, old in before.items():
        if origin not in served:
            served[origin] = old
            why = f"{old.path} is gone" if old.path not in paths else f"{old.path} no longer holds it"
            reports.append(ZoneReport(ZoneState.GONE, old.path, origin, old.zone.serial, error=why))
    return served, reports


def _failed(
    path: Path,
    error: str,
    before: Mapping[dns.name.Name, _Served],
    served: dict[dns.name.Name, _Served],
) -> ZoneReport:
    """
    The report on C{path}, which failed with C{error}; the zone it served
    C{before}, if any, is put back in C{served}.
    """
    for origin, old in before.items():
        if old.path == path and origin not in served:
            served[origin] = old
            return ZoneReport(ZoneState.KEPT, path, origin, old.zone.serial, error=error)
    return ZoneReport(ZoneState.FAILED, path, named_origin(path), error=error)
