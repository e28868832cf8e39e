# -*- test-case-name: tests.zones.test_zonefile -*-
"""
dnspython's zone-file reader, made fit to serve from: a tokenizer that
reports the line a record starts on and reads C{$INCLUDE} relative to the
including file, a reader that refuses owners outside the zone instead of
skipping them, and the note of where each record was read, for the checks
of L{dnstls.zones.checks} to name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
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
import dns.zonefile

from dnstls.errors import reason as _reason

Where = tuple[str, int]

#: How deep C{$INCLUDE} may nest; deeper is taken for a file including itself.
_MAX_INCLUDE_DEPTH = 16

_DNSPYTHON_WRAPPED = re.compile(r"^caught exception <class '[\w.]+'>: ")


class Located(Exception):
    """
    A failure whose place in the source is known: raised past
    C{Reader.read}, which would otherwise re-label it with the tokenizer's
    current line.
    """

    def __init__(self, where: Where, reason: str) -> None:
        super().__init__(f"{where[0]}:{where[1]}: {reason}")


class Refused(dns.exception.SyntaxError):
    """
    A record read well but refused by a check of ours; raised as a
    C{SyntaxError} so that dnspython's reader passes it on.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)  # type: ignore[no-untyped-call]


class ZoneTokenizer(dns.tokenizer.Tokenizer):
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

    def __init__(self, txn: dns.transaction.Transaction, origin: dns.name.Name | None) -> None:
        """
        @param origin: the zone's apex, as the reader's C{zone_origin}:
            C{None} until the first C{$ORIGIN} names it (see
            L{_set_origin}).  Not the reader itself, so that no cycle holds
            the zone read for the cyclic garbage collector.
        """
        self._txn = txn
        self._origin = origin

    def _set_origin(self, origin: dns.name.Name) -> None:
        # the reader sets its zone_origin from the first $ORIGIN and then
        # calls this
        if self._origin is None:
            self._origin = origin
        self._txn._set_origin(origin)

    def add(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        origin = self._origin
        if rdata.rdtype == dns.rdatatype.SOA and name != origin:
            raise Refused(
                f"SOA record at {name}, which is not the apex {origin}"
            )
        self._txn.add(name, ttl, rdata)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._txn, attribute)


class CheckingReader(dns.zonefile.Reader):
    """
    dnspython's zone reader, made to refuse owner names outside the zone
    instead of skipping them silently, to report each record's own line,
    and to read C{$INCLUDE} files relative to the including file.

    @ivar record_where: where the record being read starts.
    """

    tok: ZoneTokenizer

    def __init__(self, tok: ZoneTokenizer, txn: dns.transaction.Transaction) -> None:
        super().__init__(tok, dns.rdataclass.IN, txn, allow_include=True)
        self.txn = _Adding(txn, self.zone_origin)  # type: ignore[assignment]
        self.record_where: Where = tok.where()

    def __setattr__(self, attribute: str, value: Any) -> None:
        if attribute == "tok" and not isinstance(value, ZoneTokenizer):
            # Reader.read opens an included file with a plain tokenizer.
            if len(self.saved_state) > _MAX_INCLUDE_DEPTH:
                value.file.close()
                including = self.saved_state[-1][0]
                assert isinstance(including, ZoneTokenizer)
                raise Located(
                    including.include_where,
                    f"$INCLUDE nested more than {_MAX_INCLUDE_DEPTH} deep (a file including itself?)",
                )
            value = ZoneTokenizer(value.file, value.filename, os.path.dirname(value.filename))
        super().__setattr__(attribute, value)

    def _eat_line(self) -> None:
        raise Refused(
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
            if isinstance(e, Refused):
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
            raise Located(self.record_where, reason) from None

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
class RecordLines:
    """
    Where in the source each (owner, type) pair was first read.
    """

    reader: CheckingReader | None = None
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
            raise Refused(f"{name} has a CNAME and other data")
        if dns.rdatatype.is_singleton(rdataset.rdtype):
            # The rdataset offered replaces the one there: a singleton type
            # keeps only its last record.
            there = node.get_rdataset(rdataset.rdclass, rdataset.rdtype, rdataset.covers)
            if there is not None and set(there) != set(rdataset):
                type_text = dns.rdatatype.to_text(rdataset.rdtype)
                raise Refused(f"{name} has more than one {type_text} record")

    def where(self, name: dns.name.Name, rdtype: int) -> str:
        """
        C{file:line} for the first record of C{rdtype} at C{name}.
        """
        found = self.seen.get((name, rdtype))
        return f"{found[0]}:{found[1]}" if found else "?"
