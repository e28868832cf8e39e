# -*- test-case-name: tests.zones.test_zonefile -*-
"""
Reading BIND master files with dnspython and checking them before they are
served.

L{load_zone} accepts everything dnspython's zone reader does (C{$ORIGIN},
C{$TTL}, C{$INCLUDE}, C{$GENERATE}, every record type dnspython knows) and
adds the checks an authoritative server owes its clients: an SOA and NS
records at the apex, no CNAME beside other data, no owner outside the zone,
and nothing but glue addresses below a zone cut.  Every failure is a
L{ZoneError} whose message is one line naming the file, the line where it is
known (the line a record starts on, in the included file for an included
record), and the reason.

C{$INCLUDE} names a file relative to the directory of the file that
includes it, whatever the process's working directory is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tokenizer
import dns.transaction
import dns.zone
import dns.zonefile

from dnstls.errors import ZoneError
from dnstls.errors import reason as _reason

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

#: How deep C{$INCLUDE} may nest; deeper is taken for a file including itself.
_MAX_INCLUDE_DEPTH = 16

_DNSPYTHON_WRAPPED = re.compile(r"^caught exception <class '[\w.]+'>: ")


class _Located(Exception):
    """
    A failure whose place in the source is known: raised past
    C{Reader.read}, which would otherwise re-label it with the tokenizer's
    current line.
    """

    def __init__(self, where: Where, reason: str) -> None:
        super().__init__(f"{where[0]}:{where[1]}: {reason}")


class _Refused(dns.exception.SyntaxError):
    """
    A record read well but refused by a check of ours; raised as a
    C{SyntaxError} so that dnspython's reader passes it on.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)  # type: ignore[no-untyped-call]


class _Tokenizer(dns.tokenizer.Tokenizer):
    """
    dnspython's tokenizer with two fixes for zone files:

      - C{where()} names the line of the last token read, not the next line
        when that token ended at a newline the tokenizer pushed back;
      - the file name after a C{$INCLUDE} at the start of a line is taken
        relative to the directory of this file, not the process's working
        directory.

    It also keeps the text of the tokens since L{mark}, to quote a record
    that cannot be read.
    """

    def __init__(self, f: Any, filename: str, directory: str) -> None:
        super().__init__(f, filename)
        self.directory = directory
        self.include_where: Where = (filename, 0)
        self._at_line_start = True
        self._include_next = False
        self._tokens: list[str] = []

    def _get_char(self) -> str:
        pushed_back = self.ungotten_char
        c = super()._get_char()
        if pushed_back is not None and c == "\n":
            self.line_number += 1
        return c

    def _unget_char(self, c: str) -> None:
        super()._unget_char(c)
        if c == "\n":
            self.line_number -= 1

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        token = super().get(want_leading, want_comment)
        if self._include_next:
            self._include_next = False
            if (token.is_identifier() or token.is_quoted_string()) and not os.path.isabs(
                token.value
            ):
                token = dns.tokenizer.Token(
                    token.ttype, os.path.join(self.directory, token.value), token.has_escape
                )
        elif (
            self._at_line_start
            and token.is_identifier()
            and token.value.upper() == "$INCLUDE"
        ):
            self._include_next = True
            self.include_where = self.where()
        self._at_line_start = token.is_eol_or_eof()
        if token.is_identifier() or token.is_quoted_string():
            self._tokens.append(f'"{token.value}"' if token.is_quoted_string() else token.value)
        return token

    def unget(self, token: dns.tokenizer.Token) -> None:
        super().unget(token)
        if (token.is_identifier() or token.is_quoted_string()) and self._tokens:
            self._tokens.pop()

    def mark(self) -> None:
        """
        Start a new record: forget the tokens read so far.
        """
        self._tokens = []

    def since_mark(self, limit: int = 60) -> str:
        """
        The tokens read since L{mark}, shortened to about C{limit} characters.
        """
        text = " ".join(self._tokens)
        return text if len(text) <= limit else text[: limit - 3] + "..."


class _Adding:
    """
    The transaction as the reader sees it: every C{add} first checked for an
    SOA away from the apex (which dnspython refuses with a bare
    C{ValueError}) and noted with the line where its record starts.
    """

    def __init__(self, txn: dns.transaction.Transaction, reader: _CheckingReader) -> None:
        self._txn = txn
        self._reader = reader

    def add(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        origin = self._reader.zone_origin
        if rdata.rdtype == dns.rdatatype.SOA and name != origin:
            raise _Refused(
                f"SOA record at {name}, which is not the apex {origin}"
            )
        self._txn.add(name, ttl, rdata)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._txn, attribute)


class _CheckingReader(dns.zonefile.Reader):
    """
    dnspython's zone reader, made to refuse owner names outside the zone
    instead of skipping them silently, to report each record's own line,
    and to read C{$INCLUDE} files relative to the including file.

    @ivar record_where: where the record being read starts.
    """

    tok: _Tokenizer

    def __init__(self, tok: _Tokenizer, txn: dns.transaction.Transaction) -> None:
        super().__init__(tok, dns.rdataclass.IN, txn, allow_include=True)
        self.txn = _Adding(txn, self)  # type: ignore[assignment]
        self.record_where: Where = tok.where()

    def __setattr__(self, attribute: str, value: Any) -> None:
        if attribute == "tok" and not isinstance(value, _Tokenizer):
            # Reader.read opens an included file with a plain tokenizer.
            if len(self.saved_state) > _MAX_INCLUDE_DEPTH:
                value.file.close()
                including = self.saved_state[-1][0]
                assert isinstance(including, _Tokenizer)
                raise _Located(
                    including.include_where,
                    f"$INCLUDE nested more than {_MAX_INCLUDE_DEPTH} deep (a file including itself?)",
                )
            value = _Tokenizer(value.file, value.filename, os.path.dirname(value.filename))
        super().__setattr__(attribute, value)

    def _eat_line(self) -> None:
        raise _Refused(
            f"owner {self.last_name} is outside the zone {self.zone_origin}"
        )

    def _rr_line(self) -> None:
        self._located(super()._rr_line)

    def _generate_line(self) -> None:
        self._located(super()._generate_line)

    def _located(self, read: Callable[[], None]) -> None:
        """
        Read one record (or C{$GENERATE} line), reporting a failure at the
        line where it starts.
        """
        self.record_where = self.tok.where()
        self.tok.mark()
        try:
            read()
        except (dns.exception.DNSException, ValueError) as e:
            reason = _reason(e)
            record = self.tok.since_mark()
            if isinstance(e, _Refused):
                pass
            elif isinstance(e, dns.zonefile.UnknownOrigin):
                reason = "a record before any $ORIGIN, and no origin given"
            elif reason == _reason(dns.exception.SyntaxError()):
                # dnspython's bare "Text input is malformed."
                reason = f"malformed record {record!r}"
            elif _DNSPYTHON_WRAPPED.match(reason):
                reason = f"malformed record {record!r}: {_DNSPYTHON_WRAPPED.sub('', reason)}"
            else:
                reason = f"{reason} in {record!r}"
            raise _Located(self.record_where, reason) from None

    def close_files(self) -> None:
        """
        Close the included files still open after a failure.
        """
        for state in self.saved_state:
            if state[3] is not None:
                state[3].close()
        if self.current_file is not None:
            self.current_file.close()


@dataclass
class _Lines:
    """
    Where in the source each (owner, type) pair was first read.
    """

    reader: _CheckingReader | None = None
    seen: dict[tuple[dns.name.Name, int], Where] = field(default_factory=dict)

    def note(
        self,
        txn: dns.transaction.Transaction,
        name: dns.name.Name,
        rdataset: dns.rdataset.Rdataset,
    ) -> None:
        """
        A check for C{Transaction.check_put_rdataset}: remember the line, and
        refuse a CNAME beside other data, or a second record of a type that
        allows only one (CNAME, DNAME, SOA), with a C{SyntaxError}.
        """
        assert self.reader is not None
        key = (name, rdataset.rdtype)
        if key not in self.seen:
            self.seen[key] = self.reader.record_where
        node = txn.get_node(name)
        if node is None:
            return
        mine = dns.node.NodeKind.classify_rdataset(rdataset)
        theirs = node.classify()
        kinds = {mine, theirs}
        if kinds == {dns.node.NodeKind.CNAME, dns.node.NodeKind.REGULAR}:
            raise _Refused(f"{name} has a CNAME and other data")
        if dns.rdatatype.is_singleton(rdataset.rdtype):
            # The rdataset offered replaces the one there: a singleton type
            # keeps only its last record.
            there = node.get_rdataset(rdataset.rdclass, rdataset.rdtype, rdataset.covers)
            if there is not None and set(there) != set(rdataset):
                type_text = dns.rdatatype.to_text(rdataset.rdtype)
                raise _Refused(f"{name} has more than one {type_text} record")

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

    @raise dns.exception.DNSException: if the name is not a domain name.
    """
    stem = Path(path).name
    if stem.endswith(ZONE_SUFFIX):
        stem = stem[: -len(ZONE_SUFFIX)]
    elif stem.startswith("db."):
        stem = stem[3:]
    if not stem:
        raise dns.exception.SyntaxError("the file name holds no domain name")
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
        with open(path, "rb") as source:
            data = source.read()
    except OSError as e:
        raise ZoneError(_one_line(f"{path}: cannot read zone file: {_reason(e)}")) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ZoneError(_one_line(f"{path}:{_undecodable(data, e)}")) from None
    if origin is None and not _states_origin(text):
        try:
            origin = origin_from_filename(path)
        except dns.exception.DNSException as e:
            raise ZoneError(
                _one_line(f"{path}: no $ORIGIN and no origin in the file name: {_reason(e)}")
            ) from None
    return load_zone_text(text, origin, filename=str(path))


def load_zone_text(
    text: str, origin: dns.name.Name | str | None, filename: str = "<string>"
) -> dns.zone.Zone:
    """
    Read and check a zone from master-file C{text}; see L{load_zone}.

    @param filename: the file C{text} was read from: the name errors give,
        and the directory C{$INCLUDE} names files in (by default the
        working directory).
    """
    if isinstance(origin, str):
        origin = dns.name.from_text(origin)
    zone = dns.zone.Zone(origin, dns.rdataclass.IN, relativize=False)
    lines = _Lines()
    directory = os.path.dirname(filename) if filename != "<string>" else ""
    reader: _CheckingReader | None = None
    try:
        with zone.writer(True) as txn:
            txn.check_put_rdataset(lines.note)
            reader = _CheckingReader(_Tokenizer(text, filename, directory), txn)
            lines.reader = reader
            reader.read()
    except (dns.exception.DNSException, _Located, OSError, ValueError) as e:
        # ValueError covers UnicodeDecodeError from an included file.
        if reader is not None:
            reader.close_files()
        raise ZoneError(_one_line(_failure(e, reader, filename))) from None
    _check(zone, lines, filename)
    return zone


def _failure(error: Exception, reader: _CheckingReader | None, filename: str) -> str:
    """
    The message for C{error}, raised while C{reader} read C{filename}.
    """
    if isinstance(error, (_Located, dns.exception.SyntaxError)):
        # Reader.read labels a SyntaxError with its file and line already.
        return str(error)
    here = f"{reader.tok.filename}:{reader.tok.line_number}" if reader else filename
    if isinstance(error, dns.zonefile.UnknownOrigin):
        return f"{here}: records before any $ORIGIN"
    if isinstance(error, UnicodeDecodeError) and reader is not None:
        # An included file, decoded as the tokenizer reads it.
        try:
            with open(reader.tok.filename, "rb") as source:
                data = source.read()
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            return f"{reader.tok.filename}:{_undecodable(data, e)}"
        except OSError:
            pass
        return f"{reader.tok.filename}: not UTF-8 text"
    if isinstance(error, OSError) and reader is not None:
        # Reader.read failed to open an $INCLUDE file.
        include = reader.tok.include_where
        return (
            f"{include[0]}:{include[1]}: cannot read included file "
            f"{error.filename}: {_reason(error)}"
        )
    if isinstance(error, (dns.exception.DNSException, OSError, ValueError)):
        return f"{here}: {_reason(error)}"
    raise error


def _undecodable(data: bytes, error: UnicodeDecodeError) -> str:
    """
    C{LINE: not UTF-8 text ...} for C{data} that C{error} failed to decode.
    """
    line = data[: error.start].count(b"\n") + 1
    byte = error.object[error.start : error.start + 1]
    return f"{line}: not UTF-8 text (byte 0x{byte.hex()} cannot be decoded)"


def _one_line(text: str) -> str:
    """
    C{text} with any line break escaped: a start-up error is one line.
    """
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _states_origin(text: str) -> bool:
    """
    Whether C{text} sets C{$ORIGIN} before its first record or include.
    """
    return _stated_origin(text) is not None


def _stated_origin(text: str) -> str | None:
    """
    The argument of the C{$ORIGIN} C{text} sets before its first record or
    include, if it does.
    """
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line.upper().startswith("$TTL"):
            continue
        words = line.split()
        if words[0].upper() == "$ORIGIN":
            return words[1] if len(words) > 1 else ""
        return None
    return None


def named_origin(path: str | os.PathLike[str]) -> dns.name.Name | None:
    """
    The origin the zone file at C{path} is meant to have, as far as can be
    told without loading it: its first C{$ORIGIN}, else its file name; for
    naming a zone that failed to load.

    @return: C{None} if neither gives a domain name.
    """
    try:
        with open(path, "rb") as source:
            stated = _stated_origin(source.read().decode("utf-8", "replace"))
    except OSError:
        stated = None
    try:
        return dns.name.from_text(stated) if stated else origin_from_filename(path)
    except dns.exception.DNSException:
        return None


def _check(zone: dns.zone.Zone, lines: _Lines, filename: str) -> None:
    """
    The checks made once the whole zone is read.
    """
    origin = zone.origin
    if origin is None:
        raise ZoneError(f"{filename}: no $ORIGIN, and no origin given")
    apex = zone.get_node(origin)
    if apex is None or apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA) is None:
        raise ZoneError(f"{filename}: no SOA record at the apex {origin}")
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


_DNSSEC_TYPES = frozenset(
    {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.NSEC3PARAM}
)


def refuse_signed(zone: dns.zone.Zone, source: str | os.PathLike[str]) -> None:
    """
    Refuse a DNSSEC-signed zone: the server does not serve signatures or
    denial-of-existence proofs yet, and a signed zone served without them
    is bogus to every validating resolver once its parent has a DS.

    @raise ZoneError: naming the first signature or NSEC record found.
    """
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype in _DNSSEC_TYPES:
                kind = dns.rdatatype.to_text(rdataset.rdtype)
                raise ZoneError(
                    f"{source}: {kind} at {name}: DNSSEC-signed zones are not served yet "
                    "(no RRSIG/NSEC in answers); load the unsigned zone"
                )
