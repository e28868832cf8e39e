# -*- test-case-name: tests.zones.test_plain -*-
"""
A fast reader for the plain master files most zones are: lines of
C{owner [ttl] [class] type rdata} (owner, TTL and class may be left out),
C{$ORIGIN}, C{$TTL}, comments, parentheses, and the common record types
(A, AAAA, NS, CNAME, PTR, DNAME, MX, SRV, SOA, TXT and SPF with simple
strings).

It reads exactly as dnspython's zone reader with L{dnstls.zones.reader}'s
checks does, or not at all: L{read_plain} returns C{None} for a file with
anything it does not plainly understand (an escape, C{$INCLUDE},
C{$GENERATE}, another class or type, non-ASCII text, a record that would
fail or be refused...), and the caller reads that file the exact way, which
also gives the error message.  So it never raises a reading error, and it
notes no lines: a zone it reads that then fails a check is read again the
exact way for the message.

Where it is fast: it splits lines with C{str.split} instead of reading one
character at a time, keys names by their lower-cased text instead of
hashing L{dns.name.Name}s (whose hash is a loop in Python), builds each
name from a cached parent, and builds nodes and rdatasets directly instead
of through a transaction, which copies an rdataset for every record added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.ttl
import dns.zone

_IN = dns.rdataclass.IN
_NONE = dns.rdatatype.NONE
_A = dns.rdatatype.A
_SOA = dns.rdatatype.SOA
_CNAME = dns.rdatatype.CNAME
_A_CLASS = dns.rdata.get_rdata_class(_IN, _A)


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """
    The setter of slot C{name} of C{cls}'s instances, which bypasses an
    immutable class's refusal of assignment.
    """
    for klass in cls.__mro__:
        if name in vars(klass):
            setter: Callable[[Any, Any], None] = vars(klass)[name].__set__
            return setter
    raise AttributeError(name)  # pragma: no cover


# Names and A records made without their constructors' parsing, slot by
# slot, as unpickling makes them (dnspython's immutable classes refuse
# plain assignment).
_new_name: Callable[[], dns.name.Name] = partial(object.__new__, dns.name.Name)
_set_labels = _slot_setter(dns.name.Name, "labels")
_new_a: Callable[[], dns.rdata.Rdata] = partial(object.__new__, _A_CLASS)
_set_rdclass = _slot_setter(_A_CLASS, "rdclass")
_set_rdtype = _slot_setter(_A_CLASS, "rdtype")
_set_rdcomment = _slot_setter(_A_CLASS, "rdcomment")
_set_address = _slot_setter(_A_CLASS, "address")
_new_rdataset: Callable[[], dns.rdataset.Rdataset] = partial(
    dns.rdataset.Rdataset.__new__, dns.rdataset.Rdataset
)

#: The types read here, by their mnemonic in upper case.
_TYPES: dict[str, int] = {
    text: dns.rdatatype.from_text(text)
    for text in ("A", "AAAA", "NS", "CNAME", "PTR", "DNAME", "MX", "SRV", "SOA", "TXT", "SPF")
}
_CLASSES: dict[int, Callable[..., dns.rdata.Rdata]] = {
    rdtype: dns.rdata.get_rdata_class(_IN, rdtype) for rdtype in _TYPES.values()
}
_ONE_NAME = frozenset(_TYPES[t] for t in ("NS", "CNAME", "PTR", "DNAME"))
_STRINGS = frozenset(_TYPES[t] for t in ("TXT", "SPF"))
_SINGLETONS = frozenset(
    t for t in _TYPES.values() if dns.rdatatype.is_singleton(dns.rdatatype.RdataType(t))
)

#: Text that is never plain: control characters but tab and newline (a
#: carriage return is part of a token to dnspython), and escapes.
_AWKWARD = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\\]")
#: An IPv4 address as dnspython writes it (no leading zeros), which its A
#: record keeps as given.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
#: A line's tokens when it has quotes or parentheses: a quoted string, a
#: parenthesis, the comment, a word, or (a quote left open) not plain.
_TOKEN = re.compile(r'[ \t]*(?:"([^"]*)"|([()])|;(.*)|([^ \t";()]+)|("))')
#: How many names to keep built before starting the cache afresh.
_CACHE_LIMIT = 1 << 16


class NotPlain(Exception):
    """
    Something the fast reader does not plainly understand: the file is to
    be read the exact way.
    """


#: A record as L{_awkward_record} gives it.
_Record = tuple[bool, list[str], "str | None", bool]


class _Quoted(str):
    """
    A token that was a quoted string.
    """

    __slots__ = ()


def read_plain(text: str, origin: dns.name.Name | None) -> dns.zone.Zone | None:
    """
    Read master-file C{text} as L{dnstls.zones.zonefile.load_zone_text}
    would, checks after reading left out.

    @param origin: the zone's origin, or C{None} for the first C{$ORIGIN}.
    @return: the zone, with absolute names; or C{None} if C{text} is not
        plain enough to be read here.
    """
    if not text.isascii() or _AWKWARD.search(text):
        return None
    try:
        return _PlainReader(origin).read(text)
    except (NotPlain, IndexError):
        # IndexError: a record cut short
        return None


def _ttl(token: str) -> int:
    """
    C{token} as a TTL, as dnspython reads one (C{3600}, C{1h30m}).

    @raise NotPlain: if it is not one.
    """
    if isinstance(token, _Quoted):
        raise NotPlain(token)
    if token.isdigit():
        value = int(token)
        if value <= dns.ttl.MAX_TTL:
            return value
        raise NotPlain(token)
    try:
        return dns.ttl.from_text(token)
    except dns.ttl.BadTTL:
        raise NotPlain(token) from None


def _integer(token: str, limit: int) -> int:
    """
    C{token} as an unsigned integer of at most C{limit}.

    @raise NotPlain: if it is not one.
    """
    if not token.isdigit() or isinstance(token, _Quoted):
        raise NotPlain(token)
    value = int(token)
    if value > limit:
        raise NotPlain(token)
    return value


def _awkward_record(line: str, lines: Iterator[str]) -> _Record:
    """
    The record starting at C{line}, which has quotes or parentheses; its
    lines after the first, if parentheses continue it, are taken from the
    iterator C{lines}.
    """
    leading = line[0] in " \t"
    tokens: list[str] = []
    depth = 0
    parenthesised = False
    comment: str | None
    while True:
        comment = None
        for match in _TOKEN.finditer(line):
            quoted, paren, remark, word, open_quote = match.groups()
            if word is not None:
                tokens.append(word)
            elif quoted is not None:
                tokens.append(_Quoted(quoted))
            elif paren == "(":
                depth += 1
                parenthesised = True
            elif paren == ")":
                depth -= 1
                if depth < 0:
                    raise NotPlain("unbalanced parentheses")
            elif remark is not None:
                comment = remark
            elif open_quote is not None:
                raise NotPlain("a quote left open")
        if depth == 0:
            break
        following = next(lines, None)
        if following is None:
            raise NotPlain("unbalanced parentheses")
        line = following
    if parenthesised and tokens and tokens[0].startswith("$"):
        raise NotPlain("a directive with parentheses")
    return (leading, tokens, comment, True)


class _PlainReader:
    """
    The state of one fast read: dnspython's C{Reader}'s origins, last
    owner and TTLs, and the nodes read so far, keyed by their names' text
    in lower case.
    """

    def __init__(self, origin: dns.name.Name | None) -> None:
        self.zone_origin = origin
        #: the zone origin's text in lower case: the key of its node
        self.zone_key: str | None = None
        #: the current origin's text
        self.current: str | None = None
        if origin is not None:
            if not origin.is_absolute():
                raise NotPlain("a relative origin")
            self._set_current(origin.to_text())
            self.zone_key = origin.to_text().lower()
        self.last_name: dns.name.Name | None = origin
        self.last_key = self.zone_key
        self.last_owner: str | None = "@" if origin is not None else None
        self.last_ttl: int | None = None
        self.default_ttl: int | None = None
        self.default_from_soa = False
        self.names: dict[str, dns.name.Name] = {".": dns.name.root}
        self.nodes: dict[str, dns.node.Node] = {}
        #: the names of L{nodes}, in the same order
        self.node_names: list[dns.name.Name] = []

    def _set_current(self, text: str) -> None:
        """
        Make the origin whose absolute text is C{text} current.
        """
        if "\\" in text:
            raise NotPlain("an origin with escapes")
        self.current = text
        # a relative owner means another name now
        self.last_owner = None

    def read(self, text: str) -> dns.zone.Zone:
        """
        Read C{text} into a new zone: split each line into its tokens and
        comment as dnspython's tokenizer would, and follow it.
        """
        lines = iter(text.split("\n"))
        simple = '"' not in text and "(" not in text and ")" not in text
        for line in lines:
            if not line:
                continue
            if simple or ('"' not in line and "(" not in line and ")" not in line):
                cut = line.find(";")
                if cut < 0:
                    tokens = line.split()
                    comment = None
                else:
                    tokens = line[:cut].split()
                    comment = line[cut + 1 :]
                if not tokens:
                    continue
                leading = line[0] == " " or line[0] == "\t"
                awkward = False
            else:
                leading, tokens, comment, awkward = _awkward_record(line, lines)
                if not tokens:
                    continue
            if leading:
                if self.last_key is None or self.last_name is None:
                    raise NotPlain("no owner yet")
                self._record(self.last_key, self.last_name, tokens, 0, comment, awkward)
                continue
            owner = tokens[0]
            if owner != self.last_owner:
                if isinstance(owner, _Quoted):
                    raise NotPlain("a quoted owner")
                if owner[0] == "$":
                    self._directive(tokens)
                    continue
                self.last_key, self.last_name = self._owner(owner)
                self.last_owner = owner
            assert self.last_key is not None and self.last_name is not None
            self._record(self.last_key, self.last_name, tokens, 1, comment, awkward)
        zone = dns.zone.Zone(self.zone_origin, _IN, relativize=False)
        zone.nodes = dict(zip(self.node_names, self.nodes.values(), strict=True))
        return zone

    def _directive(self, tokens: list[str]) -> None:
        """
        Follow a C{$TTL} or C{$ORIGIN} line.
        """
        directive = tokens[0].upper()
        if len(tokens) != 2 or isinstance(tokens[1], _Quoted):
            raise NotPlain(directive)
        if directive == "$TTL":
            self.default_ttl = _ttl(tokens[1])
            self.default_from_soa = False
        elif directive == "$ORIGIN":
            absolute = self._absolute(tokens[1])
            origin = self._name(absolute)
            if self.zone_origin is None:
                self.zone_origin = origin
                self.zone_key = absolute.lower()
            self._set_current(absolute)
        else:
            raise NotPlain(directive)

    def _absolute(self, text: str) -> str:
        """
        The absolute text of the name C{text}, relative to the current
        origin.
        """
        if text == "@":
            if self.current is None:
                raise NotPlain("no origin")
            return self.current
        if "@" in text or "$" in text:
            # dnspython writes these with escapes: the text is not the key
            raise NotPlain(text)
        if text[-1] == ".":
            return text
        if self.current is None:
            raise NotPlain("no origin")
        return text + self.current if self.current == "." else f"{text}.{self.current}"

    def _name(self, absolute: str, keep: bool = True) -> dns.name.Name:
        """
        The name whose absolute text is C{absolute}, built from its
        parent's, and kept for the next time if C{keep}.
        """
        name = self.names.get(absolute)
        if name is not None:
            return name
        if len(absolute) > 254:
            raise NotPlain("name too long")
        dot = absolute.find(".")
        if not 0 < dot <= 63:
            raise NotPlain("bad label")
        parent = self._name(absolute[dot + 1 :] or ".")
        name = _new_name()
        _set_labels(name, (absolute[:dot].encode(),) + parent.labels)
        if keep:
            if len(self.names) >= _CACHE_LIMIT:
                self.names = {".": dns.name.root}
            self.names[absolute] = name
        return name

    def _owner(self, text: str) -> tuple[str, dns.name.Name]:
        """
        The node key and name of the owner C{text}, which must be in the
        zone.
        """
        absolute = self._absolute(text)
        # (the text itself when it is in lower case already: one string
        # fewer kept for each node while the zone is read)
        key = absolute if absolute.islower() else absolute.lower()
        zone_key = self.zone_key
        if zone_key is None:
            raise NotPlain("no origin")
        if key != zone_key and zone_key != "." and not key.endswith("." + zone_key):
            raise NotPlain("outside the zone")
        # owners are seldom named again in rdata: not kept
        return key, self._name(absolute, keep=False)

    def _implicit_ttl(self) -> int | None:
        """
        The TTL of a record that states none: dnspython's C{_implicit_ttl}
        with RFC 2308's rule.
        """
        if self.last_ttl is not None and (self.default_ttl is None or self.default_from_soa):
            return self.last_ttl
        return self.default_ttl

    def _record(
        self,
        key: str,
        name: dns.name.Name,
        tokens: list[str],
        at: int,
        comment: str | None,
        awkward: bool,
    ) -> None:
        """
        Add the record in C{tokens} from C{at} on (C{[ttl] [class] [ttl]
        type rdata}) at C{name}, whose key is C{key}.
        """
        ttl: int | None = None
        token = tokens[at]
        if "0" <= token[0] <= "9":
            ttl = self.last_ttl = _ttl(token)
            at += 1
            token = tokens[at]
        if token == "IN" or token.upper() == "IN":
            at += 1
            token = tokens[at]
            if ttl is None and "0" <= token[0] <= "9":
                ttl = self.last_ttl = _ttl(token)
                at += 1
                token = tokens[at]
        rdtype = _TYPES.get(token) or _TYPES.get(token.upper())
        if rdtype is None:
            raise NotPlain(token)
        if awkward and any(isinstance(t, _Quoted) for t in tokens[: at + 1]):
            raise NotPlain("a quoted string before the rdata")
        if ttl is None:
            ttl = self._implicit_ttl()
        at += 1
        if (
            rdtype == _A
            and not awkward
            and len(tokens) == at + 1
            and _CANONICAL_IPV4.fullmatch(tokens[at])
        ):
            # what A's constructor makes of it, without parsing it twice
            rdata = _new_a()
            _set_rdclass(rdata, _IN)
            _set_rdtype(rdata, _A)
            _set_address(rdata, tokens[at])
            _set_rdcomment(rdata, comment)
        else:
            rdata = self._rdata(rdtype, tokens[at:], awkward)
            if comment is not None:
                _set_rdcomment(rdata, comment)
            if rdtype == _SOA:
                if key != self.zone_key:
                    raise NotPlain("SOA off the apex")
                if self.default_ttl is None:
                    self.default_ttl = rdata.minimum  # type: ignore[attr-defined]
                    self.default_from_soa = True
                    if ttl is None:
                        ttl = self._implicit_ttl()
        if ttl is None:
            raise NotPlain("no TTL")
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = dns.node.Node()
            node.rdatasets.append(_rdataset(rdtype, ttl, rdata))
            self.node_names.append(name)
        else:
            _add(node.rdatasets, rdtype, ttl, rdata)

    def _rdata(self, rdtype: int, fields: list[str], awkward: bool) -> dns.rdata.Rdata:
        """
        The rdata of type C{rdtype} made of C{fields}, by its class.
        """
        cls = _CLASSES[rdtype]
        if rdtype in _STRINGS:
            strings = tuple(field.encode() for field in fields)
            if not strings or any(len(string) > 255 for string in strings):
                raise NotPlain("bad strings")
            return cls(_IN, rdtype, strings)
        if awkward and any(isinstance(field, _Quoted) for field in fields):
            raise NotPlain("a quoted string")
        count = len(fields)
        try:
            if rdtype in _ONE_NAME and count == 1:
                return cls(_IN, rdtype, self._target(fields[0]))
            if count == 1 and rdtype in (_A, dns.rdatatype.AAAA):
                return cls(_IN, rdtype, fields[0])
            if rdtype == dns.rdatatype.MX and count == 2:
                return cls(_IN, rdtype, _integer(fields[0], 0xFFFF), self._target(fields[1]))
            if rdtype == dns.rdatatype.SRV and count == 4:
                numbers = [_integer(field, 0xFFFF) for field in fields[:3]]
                return cls(_IN, rdtype, *numbers, self._target(fields[3]))
            if rdtype == _SOA and count == 7:
                names = (self._target(fields[0]), self._target(fields[1]))
                serial = _integer(fields[2], 0xFFFFFFFF)
                return cls(_IN, rdtype, *names, serial, *(_ttl(field) for field in fields[3:]))
        except (ValueError, TypeError, dns.exception.DNSException):
            raise NotPlain("bad rdata") from None
        raise NotPlain("bad rdata")

    def _target(self, text: str) -> dns.name.Name:
        """
        The name C{text} in rdata, relative to the current origin.
        """
        return self._name(self._absolute(text))


def _add(
    rdatasets: list[dns.rdataset.Rdataset], rdtype: int, ttl: int, rdata: dns.rdata.Rdata
) -> None:
    """
    Add C{rdata} to a node's C{rdatasets} as dnspython's transaction does:
    to the rdataset of its type, whose TTL becomes the least given; an
    rdataset changed moves to the end.

    @raise NotPlain: where the exact reader refuses the record (a CNAME
        beside other data, a second CNAME, DNAME or SOA).
    """
    for rdataset in rdatasets:
        if rdataset.rdtype == rdtype:
            break
    else:
        if rdtype == _CNAME or any(r.rdtype == _CNAME for r in rdatasets):
            raise NotPlain("a CNAME and other data")
        rdatasets.append(_rdataset(rdtype, ttl, rdata))
        return
    items = rdataset.items
    if rdtype in _SINGLETONS:
        if rdata not in items:
            raise NotPlain("a second singleton")
        # the rdataset keeps the record last added
        items.clear()
    items[rdata] = None
    if ttl < rdataset.ttl:
        rdataset.ttl = ttl
    if rdatasets[-1] is not rdataset:
        rdatasets.remove(rdataset)
        rdatasets.append(rdataset)


def _rdataset(rdtype: int, ttl: int, rdata: dns.rdata.Rdata) -> dns.rdataset.Rdataset:
    """
    A new rdataset of C{rdata} alone, as C{Rdataset(IN, rdtype)} with
    C{add(rdata, ttl)} makes it.
    """
    rdataset = _new_rdataset()
    rdataset.items = {rdata: None}
    rdataset.rdclass = _IN
    rdataset.rdtype = rdtype  # type: ignore[assignment]
    rdataset.covers = _NONE
    rdataset.ttl = ttl
    return rdataset
