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
includes it, whatever the process's working directory is.  The reader is
L{dnstls.zones.reader}'s, the checks made once a zone is read are
L{dnstls.zones.checks}'.
"""

from __future__ import annotations

import os
from pathlib import Path

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
from dnstls.zones import background
from dnstls.zones.checks import check_zone
from dnstls.zones.plain import read_plain
from dnstls.zones.reader import CheckingReader, Located, RecordLines, ZoneTokenizer

ZONE_SUFFIX = ".zone"

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
    with background.reading():
        zone = read_plain(text, origin)
        if zone is not None:
            try:
                check_zone(zone, RecordLines(), filename)
            except ZoneError:
                # read again the exact way, for the lines the message names
                pass
            else:
                return zone
        return load_zone_exactly(text, origin, filename)


def load_zone_exactly(
    text: str, origin: dns.name.Name | None, filename: str = "<string>"
) -> dns.zone.Zone:
    """
    L{load_zone_text} without the fast reader of L{dnstls.zones.plain}:
    dnspython's reader for every file.
    """
    zone = dns.zone.Zone(origin, dns.rdataclass.IN, relativize=False)
    lines = RecordLines()
    directory = os.path.dirname(filename) if filename != "<string>" else ""
    reader: CheckingReader | None = None
    try:
        with zone.writer(True) as txn:
            txn.check_put_rdataset(lines.note)
            reader = CheckingReader(ZoneTokenizer(text, filename, directory), txn)
            lines.reader = reader
            reader.read()
    except (dns.exception.DNSException, Located, OSError, ValueError) as e:
        # ValueError covers UnicodeDecodeError from an included file.
        if reader is not None:
            reader.close_files()
        raise ZoneError(_one_line(_failure(e, reader, filename))) from None
    finally:
        # the reader, the transaction and the notes refer to each other:
        # without this the whole zone read would be cyclic garbage, for a
        # full collection (which holds the GIL) to find
        lines.reader = None
    check_zone(zone, lines, filename)
    return zone


def _failure(error: Exception, reader: CheckingReader | None, filename: str) -> str:
    """
    The message for C{error}, raised while C{reader} read C{filename}.
    """
    if isinstance(error, (Located, dns.exception.SyntaxError)):
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
