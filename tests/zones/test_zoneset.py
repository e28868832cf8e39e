"""
Loading the configured zones one by one: L{dnstls.zones.zoneset}.
"""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype
import pytest
from twisted.logger import LogLevel

from dnstls.errors import StartupError, ZoneError
from dnstls.zones.authority import Outcome
from dnstls.zones.zoneset import ZoneReport, ZoneSet, ZoneSources, ZoneState

ZONE = """\
$ORIGIN {origin}
$TTL 300
@    SOA ns1 hostmaster {serial} 7200 3600 1209600 300
@    NS  ns1
ns1  A   192.0.2.1
www  A   {address}
"""

#: A zone file whose sixth line cannot be read.
BROKEN = ZONE.format(origin="{origin}", serial=9, address="192.0.2.300")


def write(path: Path, origin: str, serial: int = 1, address: str = "192.0.2.10") -> Path:
    """
    Write a good zone for C{origin} at C{path}.
    """
    path.write_text(ZONE.format(origin=origin, serial=serial, address=address))
    return path


def break_(path: Path, origin: str) -> Path:
    """
    Write a zone for C{origin} at C{path} that fails on line 6.
    """
    path.write_text(BROKEN.format(origin=origin))
    return path


def www(zones: ZoneSet, origin: str) -> list[str]:
    """
    The addresses the zones served give for C{www.ORIGIN} A.
    """
    name = dns.name.from_text(f"www.{origin}")
    zone = zones.store.find(name, dns.rdatatype.A)
    assert zone is not None, origin
    result = zone.lookup(name, dns.rdatatype.A)
    assert result.outcome is Outcome.ANSWER
    return [str(rdata) for rrset in result.answer for rdata in rrset]


def states(zones: ZoneSet) -> dict[str, ZoneState]:
    return {str(report.origin): report.state for report in zones.reports}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir()
    return zones


def loaded(directory: Path, *files: Path) -> ZoneSet:
    """
    The zone set of C{directory} and C{files}, loaded once.
    """
    zones = ZoneSet(ZoneSources(directory, files))
    zones.load()
    return zones


# --- start-up -----------------------------------------------------------------


def test_good_zones_served_beside_a_broken_one(directory: Path) -> None:
    """A broken zone file is left out, each good one is served, and each gets its report."""
    good = write(directory / "good.test.zone", "good.test.")
    bad = break_(directory / "bad.test.zone", "bad.test.")
    zones = loaded(directory)
    assert [str(zone.origin) for zone in zones.store] == ["good.test."]
    assert www(zones, "good.test.") == ["192.0.2.10"]
    assert zones.store.find(dns.name.from_text("www.bad.test."), dns.rdatatype.A) is None
    assert [str(report) for report in zones.reports] == [
        f"zone bad.test.: not loaded: {bad}:6: malformed record 'www A 192.0.2.300'",
        f"zone good.test.: serial 1, loaded from {good}",
    ]
    assert [report.level for report in zones.reports] == [LogLevel.error, LogLevel.info]
    assert [report.failed for report in zones.reports] == [True, False]
    assert zones.summary() == "serving 1 zone: good.test. (serial 1); errors in 1 zone file"


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def test_broken_zone_is_unavailable(directory: Path) -> None:
    """
    The names of a zone that failed to load are unavailable (SERVFAIL), also
    below a parent zone we serve, but for a DS question at its apex (the
    parent's); the parent's other names and other zones are not.
    """
    write(directory / "test.zone", "test.")
    break_(directory / "child.test.zone", "child.test.")
    break_(directory / "bad.example.zone", "bad.example.")
    zones = loaded(directory)
    store = zones.store
    child, bad = name("child.test."), name("bad.example.")
    assert store.unavailable(name("www.child.test."), dns.rdatatype.A) == child
    assert store.unavailable(child, dns.rdatatype.SOA) == child
    assert store.unavailable(child, dns.rdatatype.DS) is None
    assert store.unavailable(name("www.bad.example."), dns.rdatatype.A) == bad
    assert store.unavailable(name("www.test."), dns.rdatatype.A) is None
    assert store.unavailable(name("www.example."), dns.rdatatype.A) is None


def test_mended_zone_is_available_again(directory: Path) -> None:
    """A broken zone mended before a reload is served, and no longer unavailable."""
    bad = break_(directory / "bad.test.zone", "bad.test.")
    write(directory / "good.test.zone", "good.test.")
    zones = loaded(directory)
    assert zones.store.unavailable(name("www.bad.test."), dns.rdatatype.A) == name("bad.test.")
    write(bad, "bad.test.")
    assert zones.load()
    assert zones.store.unavailable(name("www.bad.test."), dns.rdatatype.A) is None
    assert www(zones, "bad.test.") == ["192.0.2.10"]


def test_check_startup_with_one_good_zone(directory: Path) -> None:
    """The start-up goes on when one zone loads and another fails, unless strict."""
    write(directory / "good.test.zone", "good.test.")
    bad = break_(directory / "bad.test.zone", "bad.test.")
    zones = loaded(directory)
    zones.check_startup(strict=False)
    with pytest.raises(StartupError) as raised:
        zones.check_startup(strict=True)
    assert str(raised.value) == f"{bad}:6: malformed record 'www A 192.0.2.300'"


def test_check_startup_when_none_loads(directory: Path) -> None:
    """When every zone file fails the start-up stops with one line giving each file's reason."""
    first = break_(directory / "a.test.zone", "a.test.")
    second = break_(directory / "b.test.zone", "b.test.")
    zones = loaded(directory)
    with pytest.raises(StartupError) as raised:
        zones.check_startup(strict=False)
    reason = "6: malformed record 'www A 192.0.2.300'"
    assert str(raised.value) == f"no zone loaded: {first}:{reason}; {second}:{reason}"


def test_no_zone_files_at_all(directory: Path) -> None:
    """A server with no zone files at all (purely recursive) starts, serving none."""
    zones = loaded(directory)
    zones.check_startup(strict=True)
    assert len(zones.store) == 0
    assert zones.reports == []
    assert zones.summary() == "serving 0 zones"


def test_zones_directory_unlistable(tmp_path: Path) -> None:
    """A zones directory that cannot be listed is an error of the whole load."""
    with pytest.raises(ZoneError, match="cannot list zone directory"):
        ZoneSet(ZoneSources(tmp_path / "missing")).load()


def test_one_origin_twice_the_first_wins(directory: Path, tmp_path: Path) -> None:
    """Of two files with one origin the first is served; the second fails, naming both."""
    first = write(directory / "a.test.zone", "a.test.", address="192.0.2.1")
    second = write(tmp_path / "copy.txt", "a.test.", address="192.0.2.2")
    zones = loaded(directory, second)
    assert www(zones, "a.test.") == ["192.0.2.1"]
    report = zones.reports[-1]
    assert report.state is ZoneState.FAILED
    assert str(report) == (
        f"zone a.test.: not loaded: {second}: zone a.test. is already loaded from {first}"
    )
    zones.check_startup(strict=False)
    with pytest.raises(StartupError, match="already loaded"):
        zones.check_startup(strict=True)


def test_failed_zone_named_by_file_name(directory: Path) -> None:
    """A file that cannot be read is reported under the origin its file name gives."""
    missing = directory / "gone.test.zone"
    zones = ZoneSet(ZoneSources(directory, (missing,)))
    zones.load()
    [report] = zones.reports
    assert str(report).startswith(f"zone gone.test.: not loaded: {missing}: cannot read zone file")


def test_report_without_origin() -> None:
    """A failed file that names no origin is reported by its path."""
    report = ZoneReport(ZoneState.FAILED, Path("/z/x"), error="/z/x: bad")
    assert str(report) == "zone file /z/x: not loaded: /z/x: bad"


# --- reload ---------------------------------------------------------------------


def test_reload_one_broken_one_changed(directory: Path) -> None:
    """At a reload a changed zone serves its new data and a now broken one keeps its old data."""
    changed = write(directory / "changed.test.zone", "changed.test.")
    broken = write(directory / "broken.test.zone", "broken.test.", serial=5, address="192.0.2.5")
    zones = loaded(directory)
    before = zones.store
    write(changed, "changed.test.", serial=2, address="192.0.2.20")
    break_(broken, "broken.test.")
    assert zones.load()
    assert zones.store is not before
    assert www(zones, "changed.test.") == ["192.0.2.20"]
    assert www(zones, "broken.test.") == ["192.0.2.5"]
    assert [str(report) for report in zones.reports] == [
        f"zone broken.test.: not reloaded, still serving serial 5: {broken}:6: "
        "malformed record 'www A 192.0.2.300'",
        f"zone changed.test.: serial 1 -> 2, reloaded from {changed}",
    ]
    assert zones.reports[0].level is LogLevel.error
    assert zones.summary() == (
        "serving 2 zones: broken.test. (serial 5), changed.test. (serial 2); errors in 1 zone file"
    )


def test_reload_unchanged(directory: Path) -> None:
    """A reload that changes no record keeps the same store, so cached answers stay valid."""
    write(directory / "a.test.zone", "a.test.")
    zones = loaded(directory)
    before = zones.store
    assert not zones.load()
    assert zones.store is before
    assert [str(report) for report in zones.reports] == ["zone a.test.: serial 1, unchanged"]


def test_reload_same_serial_new_data(directory: Path) -> None:
    """Records changed without a new serial are served all the same, as Knot does."""
    path = write(directory / "a.test.zone", "a.test.")
    zones = loaded(directory)
    write(path, "a.test.", address="192.0.2.99")
    assert zones.load()
    assert www(zones, "a.test.") == ["192.0.2.99"]
    assert states(zones) == {"a.test.": ZoneState.RELOADED}


def test_reload_ttl_change(directory: Path) -> None:
    """A changed TTL alone is a change."""
    path = write(directory / "a.test.zone", "a.test.")
    zones = loaded(directory)
    path.write_text(path.read_text().replace("$TTL 300", "$TTL 60"))
    assert zones.load()
    assert states(zones) == {"a.test.": ZoneState.RELOADED}


def test_reload_new_file(directory: Path) -> None:
    """A zone file added before a reload is served, reported as new."""
    write(directory / "a.test.zone", "a.test.")
    zones = loaded(directory)
    added = write(directory / "b.test.zone", "b.test.", serial=3)
    assert zones.load()
    assert www(zones, "b.test.") == ["192.0.2.10"]
    assert str(zones.reports[-1]) == f"zone b.test.: serial 3, new, loaded from {added}"


def test_reload_file_deleted(directory: Path) -> None:
    """A zone whose file was deleted goes on serving its old data, with a warning."""
    gone = write(directory / "gone.test.zone", "gone.test.", serial=4)
    write(directory / "a.test.zone", "a.test.")
    zones = loaded(directory)
    before = zones.store
    gone.unlink()
    assert not zones.load()
    assert zones.store is before
    assert www(zones, "gone.test.") == ["192.0.2.10"]
    report = zones.reports[-1]
    assert str(report) == f"zone gone.test.: {gone} is gone; still serving serial 4 until a restart"
    assert report.level is LogLevel.warn
    assert not report.failed


def test_reload_file_with_another_origin(directory: Path) -> None:
    """A file that now holds another zone serves it, and the zone it held goes on serving."""
    path = write(directory / "a.zone", "a.test.")
    zones = loaded(directory)
    write(path, "b.test.")
    assert zones.load()
    assert {str(zone.origin) for zone in zones.store} == {"a.test.", "b.test."}
    assert str(zones.reports[-1]) == (
        f"zone a.test.: {path} no longer holds it; still serving serial 1 until a restart"
    )


def test_reload_broken_from_the_start(directory: Path) -> None:
    """A zone that failed at start-up and still fails is reported not loaded again."""
    bad = break_(directory / "bad.test.zone", "bad.test.")
    write(directory / "a.test.zone", "a.test.")
    zones = loaded(directory)
    zones.load()
    assert states(zones)["bad.test."] is ZoneState.FAILED
    write(bad, "bad.test.")
    assert zones.load()
    assert states(zones)["bad.test."] is ZoneState.NEW
    assert www(zones, "bad.test.") == ["192.0.2.10"]


def test_atomic_reload_changes_nothing(directory: Path) -> None:
    """An atomic reload (--strict-zones) with one broken file keeps every zone as it was."""
    changed = write(directory / "changed.test.zone", "changed.test.")
    broken = write(directory / "broken.test.zone", "broken.test.")
    zones = loaded(directory)
    before = zones.store
    write(changed, "changed.test.", serial=2, address="192.0.2.20")
    break_(broken, "broken.test.")
    assert not zones.load(atomic=True)
    assert zones.store is before
    assert www(zones, "changed.test.") == ["192.0.2.10"]
    assert [report.state for report in zones.failures()] == [ZoneState.KEPT]
    write(broken, "broken.test.")
    assert zones.load(atomic=True)
    assert www(zones, "changed.test.") == ["192.0.2.20"]
