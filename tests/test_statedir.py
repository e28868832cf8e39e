"""
Tests for L{dnstls.statedir}: warnings for a state directory or a key file
others can reach, and the SPKI pin of the generated key across a reload
that finds its files gone or replaced.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from dnstls import statedir
from dnstls.certs import GENERATED_CERT, GENERATED_KEY, generate_self_signed, keep_generated
from dnstls.server import ServerService
from dnstls.tap import Options, makeService

NAMES = ("dns.example.test",)
_T = TypeVar("_T")


def logged(call: Callable[[], _T]) -> tuple[_T, list[tuple[LogLevel, str]]]:
    """
    What C{call} returns, and the level and text of each line it logs.
    """
    with capturedLogs() as events:
        result = call()
    return result, [(event["log_level"], formatEvent(event)) for event in events]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_open_modes_are_one_warning_each(tmp_path: Path) -> None:
    """A state directory of mode 0755 and a key of mode 0644 are one warning line each at
    start-up, naming the path, the mode and the chmod to run; the key is served all the same."""
    state = tmp_path / "state"
    served = statedir.start(state, NAMES)
    os.chmod(state, 0o755)
    os.chmod(state / GENERATED_KEY, 0o644)
    credential, lines = logged(lambda: statedir.start(state, NAMES))
    assert credential.pin == served.pin
    assert lines == [
        (
            LogLevel.warn,
            f"state directory {state} has mode 0755: its group or others can reach it "
            f"(run chmod 700 {state})",
        ),
        (
            LogLevel.warn,
            f"TLS key {state / GENERATED_KEY} has mode 0644: its group or others can read it "
            f"(run chmod 600 {state / GENERATED_KEY})",
        ),
    ]


def test_private_modes_say_nothing(tmp_path: Path) -> None:
    """A state directory and key as the server makes them (0700, 0600) log nothing at
    start-up."""
    state = tmp_path / "state"
    statedir.start(state, NAMES)
    assert (mode(state), mode(state / GENERATED_KEY)) == (0o700, 0o600)
    _, lines = logged(lambda: statedir.start(state, NAMES))
    assert lines == []


def test_new_key_at_start_is_a_warning_with_its_pin(tmp_path: Path) -> None:
    """Making the key at start-up is one warning line giving the new pin."""
    state = tmp_path / "state"
    credential, lines = logged(lambda: statedir.start(state, NAMES))
    [(level, text)] = lines
    assert level == LogLevel.warn
    assert text.startswith(f"TLS key {state / GENERATED_KEY} made, SPKI pin {credential.pin}")
    assert "clients pinning an earlier key of this server will fail" in text


def test_key_missing_at_start_says_the_pin_changed(tmp_path: Path) -> None:
    """A certificate left without its key at start-up: a new key, and one warning line giving
    the old pin and the new."""
    state = tmp_path / "state"
    old = statedir.start(state, NAMES)
    (state / GENERATED_KEY).unlink()
    new, lines = logged(lambda: statedir.start(state, NAMES))
    assert new.pin != old.pin
    assert lines == [
        (
            LogLevel.warn,
            f"TLS key {state / GENERATED_KEY} is missing: made a new one, and the SPKI pin changed "
            f"from {old.pin} to {new.pin}: clients pinning {old.pin} will fail",
        )
    ]


def test_certificate_missing_at_start_keeps_the_key(tmp_path: Path) -> None:
    """A key left without its certificate at start-up gets a new certificate: the SPKI pin stays,
    and one warning line says so."""
    state = tmp_path / "state"
    old = statedir.start(state, NAMES)
    (state / GENERATED_CERT).unlink()
    new, lines = logged(lambda: statedir.start(state, NAMES))
    assert new.pin == old.pin
    assert lines == [
        (
            LogLevel.warn,
            f"TLS certificate {state / GENERATED_CERT} is missing: made a new one for the key "
            f"{state / GENERATED_KEY}, whose SPKI pin {old.pin} stays",
        )
    ]
    assert (state / GENERATED_CERT).exists()


def test_reload_with_the_certificate_gone_keeps_the_key_on_disk(tmp_path: Path) -> None:
    """At a reload with only the certificate deleted, the key on disk gets a new certificate:
    the pin stays when it is the key served, and an operator's new key there is not overwritten
    (the pin change is a warning)."""
    state = tmp_path / "state"
    served = statedir.start(state, NAMES)
    (state / GENERATED_CERT).unlink()
    kept, lines = logged(lambda: statedir.reload(state, NAMES, served))
    assert kept.pin == served.pin
    assert [level for level, _ in lines] == [LogLevel.warn]
    assert "is gone: made a new one for the key" in lines[0][1]
    keep_generated(state, generate_self_signed(NAMES))
    operators = statedir.start(state, NAMES)
    (state / GENERATED_CERT).unlink()
    new, lines = logged(lambda: statedir.reload(state, NAMES, served))
    assert new.pin == operators.pin != served.pin
    assert lines[-1] == (
        LogLevel.warn,
        f"reload: TLS key {state / GENERATED_KEY} replaced: the SPKI pin changed from {served.pin} "
        f"to {new.pin}: clients pinning {served.pin} will fail",
    )


@pytest.mark.parametrize("lose", ["directory", "key"])
def test_reload_keeps_the_key_whose_files_are_gone(tmp_path: Path, lose: str) -> None:
    """At a reload with the state directory or the key deleted, the key served goes on being
    served and is written back (0700, 0600), with one warning line."""
    state = tmp_path / "state"
    served = statedir.start(state, NAMES)
    missing = state / GENERATED_KEY
    if lose == "directory":
        shutil.rmtree(state)
    else:
        missing.unlink()
    kept, lines = logged(lambda: statedir.reload(state, NAMES, served))
    assert kept.pin == served.pin
    assert lines == [
        (
            LogLevel.warn,
            f"reload: {missing} is gone: still serving the key with SPKI pin {served.pin}, "
            f"written back to {state} (a new key would change the pin, and pinned clients would "
            "fail)",
        )
    ]
    assert (mode(state), mode(state / GENERATED_KEY)) == (0o700, 0o600)
    again, lines = logged(lambda: statedir.start(state, NAMES))
    assert again.pin == served.pin and lines == []


def test_reload_that_cannot_write_back_still_serves(tmp_path: Path) -> None:
    """A reload that cannot write the lost key back serves it all the same, and its warning
    says a restart will change the pin."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    state = blocker / "state"
    served = keep_generated(tmp_path / "elsewhere", generate_self_signed(NAMES))
    kept, lines = logged(lambda: statedir.reload(state, NAMES, served))
    assert kept is served
    [(level, text)] = lines
    assert level == LogLevel.warn
    assert "cannot be written back" in text
    assert f"a restart will make a new key, and clients pinning {served.pin} will fail" in text


def test_reload_of_a_replaced_key_says_the_pin_changed(tmp_path: Path) -> None:
    """A key replaced in the state directory is served from the reload on, with one warning
    line giving the old pin and the new."""
    state = tmp_path / "state"
    served = statedir.start(state, NAMES)
    replaced = keep_generated(state, generate_self_signed(NAMES))
    new, lines = logged(lambda: statedir.reload(state, NAMES, served))
    assert new.pin == replaced.pin != served.pin
    assert lines == [
        (
            LogLevel.warn,
            f"reload: TLS key {state / GENERATED_KEY} replaced: the SPKI pin changed from "
            f"{served.pin} to {new.pin}: clients pinning {served.pin} will fail",
        )
    ]


def test_server_reload_keeps_serving_the_pin(tmp_path: Path) -> None:
    """A server whose state directory is deleted goes on serving its key through SIGHUP's
    reload, with no error."""
    state = tmp_path / "state"
    options = Options()
    options.parseOptions(
        ["--zones", str(tmp_path), "--listen-tls", "127.0.0.1:0", "--no-recursion",
         "--state-dir", str(state), "--tls-name", NAMES[0]]
    )
    service = makeService(options, MemoryReactorClock())
    assert isinstance(service, ServerService) and service.tls is not None
    try:
        [before] = service.tls.credentials
        shutil.rmtree(state)
        results: list[bool] = []
        _, lines = logged(lambda: service.reload().addCallback(results.append))
        assert results == [True]
        [after] = service.tls.credentials
        assert after.pin == before.pin
        assert (state / GENERATED_KEY).exists()
        assert [text for level, text in lines if level == LogLevel.warn][0].startswith(
            f"reload: {state / GENERATED_KEY} is gone: still serving the key"
        )
        assert not [text for level, text in lines if level in (LogLevel.error, LogLevel.critical)]
    finally:
        service.listening.close()
