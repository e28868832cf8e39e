# -*- test-case-name: tests.test_zonefile -*-
"""
Reading BIND master files with dnspython and checking them before they are
served.

L{load_zone} accepts everything dnspython's zone reader does (C{$ORIGIN},
C{$TTL}, C{$INCLUDE}, C{$GENERATE}, every record type dnspython knows) and
adds the checks an authoritative server owes its clients: an SOA and NS
records at the apex, no CNAME beside other data, no owner outside the zone,
and nothing but glue addresses below a zone cut.  Every failure is a
L{ZoneError} whose message names the file, the line where it is known, and
the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.name
import dns.node
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tokenizer
import dns.transaction
import dns.zone
import dns.zonefile

from dnstls.errors import ZoneError

ZONE_SUFFIX = ".zone"

_AT_CUT = frozenset(
    {
        dns.rdatatype.NS,
        dns.rdatatype.DS,
        dns.rdatatype.NSEC,
        dns.rdatatype.RRSIG,
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
    }
)
_GLUE = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})

Where = tuple[str, int]


class _CheckingReader(dns.zonefile.Reader):
    """
    dnspython's zone reader, made to refuse owner names outside the zone
    instead of skipping them silently.
    """

    def _eat_line(self) -> None:
        raise dns.exception.SyntaxError(
            f"owner {self.last_name} is outside the zone {self.zone_origin}"
        )


@dataclass
class _Lines:
    """
    Where in the source each (owner, type) pair was first read.
    """

    reader: dns.zonefile.Reader | None = None
    seen: dict[tuple[dns.name.Name, int], Where] = field(default_factory=dict)

    def note(
        self,
        txn: dns.transaction.Transaction,
        name: dns.name.Name,
        rdataset: dns.rdataset.Rdataset,
    ) -> None:
        """
        A check for C{Transaction.check_put_rdataset}: remember the line, and
        refuse a CNAME beside other data with a C{SyntaxError}, which the
        reader reports with its file and line.
        """
        assert self.reader is not None
        key = (name, rdataset.rdtype)
        if key not in self.seen:
            self.seen[key] = self.reader.tok.where()
        node = txn.get_node(name)
        if node is None:
            return
        mine = dns.node.NodeKind.classify_rdataset(rdataset)
        theirs = node.classify()
        kinds = {mine, theirs}
        if kinds == {dns.node.NodeKind.CNAME, dns.node.NodeKind.REGULAR}:
            raise dns.exception.SyntaxError(f"{name} has a CNAME and other data")
        if rdataset.rdtype == dns.rdatatype.CNAME and node.get_rdataset(
            rdataset.rdclass, dns.rdatatype.CNAME
        ):
            raise dns.exception.SyntaxError(f"{name} has more than one CNAME")

    def where(self, name: dns.name.Name, rdtype: int) -> str:
        """
        C{file:line} for the first record of C{rdtype} at C{name}.
        """
        found = self.seen.get((name, rdtype))
        return f"{found[0]}:{found[1]}" if found else "?"


def origin_from_filename(path: str | os.PathLike[str]) -> dns.name.Name:
    """
    The origin a zone file names by its file name: C{example.test.zone} and
    C{db.example.test} both serve C{example.test.}.
    """
    stem = Path(path).name
    if stem.endswith(ZONE_SUFFIX):
        stem = stem[: -len(ZONE_SUFFIX)]
    elif stem.startswith("db."):
        stem = stem[3:]
    return dns.name.from_text(stem)


def load_zone(
    path: str | os.PathLike[str], origin: dns.name.Name | None = None
) -> dns.zone.Zone:
    """
    Read and check the zone file at C{path}.

    @param origin: the zone's origin; by default the file's first
        C{$ORIGIN}, or failing that its file name.
    @return: a zone with absolute owner names.
    @raise ZoneError: if the file cannot be read or fails a check.
    """
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ZoneError(f"{path}: cannot read zone file: {_reason(e)}") from None
    if origin is None and not _states_origin(text):
        try:
            origin = origin_from_filename(path)
        except dns.exception.DNSException as e:
            raise ZoneError(f"{path}: no $ORIGIN and no origin in the file name: {e}") from None
    return load_zone_text(text, origin, filename=str(path))


def load_zone_text(
    text: str, origin: dns.name.Name | str | None, filename: str = "<string>"
) -> dns.zone.Zone:
    """
    Read and check a zone from master-file C{text}; see L{load_zone}.
    """
    if isinstance(origin, str):
        origin = dns.name.from_text(origin)
    zone = dns.zone.Zone(origin, dns.rdataclass.IN, relativize=False)
    lines = _Lines()
    directory = os.path.dirname(filename) if filename != "<string>" else None
    cwd = os.getcwd()
    try:
        if directory:
            # $INCLUDE names files relative to the including zone file.
            os.chdir(directory)
        with zone.writer(True) as txn:
            txn.check_put_rdataset(lines.note)
            tok = dns.tokenizer.Tokenizer(text, filename)
            reader = _CheckingReader(tok, dns.rdataclass.IN, txn, allow_include=True)
            lines.reader = reader
            reader.read()
    except dns.exception.SyntaxError as e:
        raise ZoneError(str(e)) from None
    except dns.zonefile.UnknownOrigin:
        raise ZoneError(f"{filename}: records before any $ORIGIN") from None
    except (dns.exception.DNSException, OSError) as e:
        raise ZoneError(f"{filename}: {_reason(e)}") from None
    finally:
        os.chdir(cwd)
    _check(zone, lines, filename)
    return zone


def _states_origin(text: str) -> bool:
    """
    Whether C{text} sets C{$ORIGIN} before its first record or include.
    """
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip().upper()
        if not line or line.startswith("$TTL"):
            continue
        return line.startswith("$ORIGIN")
    return False


def _check(zone: dns.zone.Zone, lines: _Lines, filename: str) -> None:
    """
    The checks made once the whole zone is read.
    """
    origin = zone.origin
    assert origin is not None
    apex = zone.get_node(origin)
    if apex is None or apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA) is None:
        raise ZoneError(f"{filename}: no SOA record at the apex {origin}")
    soa = apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA)
    if len(soa) != 1:
        raise ZoneError(
            f"{lines.where(origin, dns.rdatatype.SOA)}: the apex {origin} has {len(soa)} SOA records"
        )
    if apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) is None:
        raise ZoneError(f"{filename}: no NS records at the apex {origin}")
    for name, node in zone.nodes.items():
        if name != origin and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA):
            raise ZoneError(
                f"{lines.where(name, dns.rdatatype.SOA)}: SOA record at {name}, "
                f"which is not the apex {origin}"
            )
    cuts = {
        name
        for name, node in zone.nodes.items()
        if name != origin and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
    }
    for cut in cuts:
        node = zone.nodes[cut]
        for rdataset in node.rdatasets:
            if rdataset.rdtype not in _AT_CUT:
                raise ZoneError(
                    f"{lines.where(cut, rdataset.rdtype)}: "
                    f"{dns.rdatatype.to_text(rdataset.rdtype)} at {cut}, a zone cut, "
                    "where only NS, DS and glue belong"
                )
    for name, node in zone.nodes.items():
        parent = name.parent() if name != origin else None
        while parent is not None and parent != origin:
            if parent in cuts:
                for rdataset in node.rdatasets:
                    if rdataset.rdtype not in _GLUE:
                        raise ZoneError(
                            f"{lines.where(name, rdataset.rdtype)}: "
                            f"{dns.rdatatype.to_text(rdataset.rdtype)} at {name}, below "
                            f"the zone cut {parent}, where only glue addresses belong"
                        )
            parent = parent.parent()


def zone_files(directory: str | os.PathLike[str]) -> list[Path]:
    """
    The zone files in C{directory}: every regular file named C{*.zone}, in
    name order.  Other files (included fragments, notes) are left alone.

    @raise ZoneError: if the directory cannot be listed.
    """
    try:
        entries = sorted(Path(directory).iterdir())
    except OSError as e:
        raise ZoneError(f"{directory}: cannot list zone directory: {_reason(e)}") from None
    return [
        entry
        for entry in entries
        if entry.name.endswith(ZONE_SUFFIX) and not entry.name.startswith(".") and entry.is_file()
    ]


def _reason(error: BaseException) -> str:
    """
    One line saying why C{error} happened, without its class name.
    """
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    text = str(error) or error.__class__.__doc__ or error.__class__.__name__
    return text.strip().splitlines()[0]
