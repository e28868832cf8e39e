"""
Reading and checking zone files: L{dnstls.zones.zonefile}.
"""

from __future__ import annotations

import os
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from dnstls.errors import ZoneError
from dnstls.zones.zonefile import (
    load_zone,
    load_zone_text,
    named_origin,
    origin_from_filename,
    zone_files,
)

#: The start of a good zone t.: five lines, so a record added after it is on
#: line 6.
HEAD = """\
$ORIGIN t.
$TTL 3600
@       SOA  ns1 hostmaster 1 7200 3600 1209600 300
@       NS   ns1
ns1     A    192.0.2.53
"""

H64 = "0123456789abcdef" * 4
KEY = (
    "AwEAAbdxyhNuSutc5EMzxTs9LBPCIkOFH8cIvM4p9+LrV4e19WzK00+CI6zBCQTdtWsuxKbWIy87UOoJ"
    "TwkUs7lBu+Upr1gsNrut79ryra+bSRGQb1slImA8YVJyuIDsj7kwzG7jnERNqnWxZ48AWkskmdHaVDP4"
    "BcelrTI3rMXdXF5D"
)
B64 = (
    "MxFcby9k/yvedMfQgKzhH5er0Mu/vILz45IkskceFGgiWCn/GxHhai6VAuHAoNUz4YoU1tVfSCSqQYn6"
    "//11U6Nld80jEeC8aTrO+KKmCaY="
)

#: Presentation-format rdata for every record type dnspython has its own
#: code for.  The apex SOA and NS come from HEAD.
EXAMPLES = {
    "A": "192.0.2.1",
    "AAAA": "2001:db8::1",
    "AFSDB": "1 afs.example.",
    "AMTRELAY": "10 0 1 203.0.113.15",
    "APL": "1:192.0.2.0/24 !1:192.0.2.128/28",
    "AVC": '"app-name:WOLFGANG|app-class:OAM"',
    "BRID": B64,
    "CAA": '0 issue "ca.example.net"',
    "CDNSKEY": "257 3 13 " + KEY,
    "CDS": "12345 13 2 " + H64,
    "CERT": "1 0 0 " + B64,
    "CNAME": "target.example.",
    "CSYNC": "66 3 A NS AAAA",
    "DHCID": "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
    "DLV": "12345 13 2 " + H64,
    "DNAME": "target.example.",
    "DNSKEY": "257 3 13 " + KEY,
    "DS": "12345 13 2 " + H64,
    "DSYNC": "CDS NOTIFY 5359 cds-scanner.example.",
    "EUI48": "00-00-5e-00-53-2a",
    "EUI64": "00-00-5e-ef-10-00-00-2a",
    "GPOS": "-22.6882 116.8652 250.0",
    "HHIT": B64,
    "HINFO": '"PC" "Linux"',
    "HIP": "2 200100107B1A74DF365639CC39F1D578 " + KEY + " rvs.example.",
    "HTTPS": "1 . alpn=h2",
    "IPSECKEY": "10 1 2 192.0.2.38 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
    "ISDN": '"150862028003217" "004"',
    "KEY": "512 3 13 " + KEY,
    "KX": "10 kx.example.",
    "L32": "10 10.1.2.0",
    "L64": "10 2001:0db8:1140:1000",
    "LOC": "60 9 0.000 N 24 39 0.000 E 10.00m 20.00m 2000.00m 20.00m",
    "LP": "10 l64-subnet.example.",
    "MX": "10 mail.example.",
    "NAPTR": '100 10 "u" "E2U+sip" "!^.*$!sip:info@example.com!" .',
    "NID": "10 0014:4fff:ff20:ee64",
    "NINFO": '"status ok"',
    "NS": "ns1.t.",
    "NSAP": "0x47000580ffff000000321099991111222233334444",
    "NSAP-PTR": "nsap.example.",
    "NSEC": "next.t. A RRSIG NSEC",
    "NSEC3": "1 1 12 aabbccdd 2vptu5timamqttgl4luu9kg21e0aor3s A RRSIG",
    "NSEC3PARAM": "1 0 12 aabbccdd",
    "OPENPGPKEY": KEY,
    "PTR": "host.example.",
    "PX": "10 map822.example. mapx400.example.",
    "RESINFO": "qnamemin exterr=15,16,17",
    "RP": "mbox.example. txt.example.",
    "RRSIG": "A 13 2 3600 20300101000000 20200101000000 12345 t. " + B64,
    "RT": "10 relay.example.",
    "SIG": "A 13 2 3600 20300101000000 20200101000000 12345 t. " + B64,
    "SMIMEA": "3 1 1 " + H64,
    "SOA": "ns1.t. hostmaster.t. 1 7200 3600 1209600 300",
    "SPF": '"v=spf1 -all"',
    "SRV": "0 5 53 target.example.",
    "SSHFP": "4 2 " + H64,
    "SVCB": "1 svc.example. alpn=h2 port=853",
    "TLSA": "3 1 1 " + H64,
    "TXT": '"hello world"',
    "URI": '10 1 "ftp://ftp.example.com/public"',
    "WALLET": '"BTC" "bc1qexample"',
    "WKS": "192.0.2.1 6 25 80",
    "X25": '"311061700956"',
    "ZONEMD": "2018031900 1 1 " + H64 + H64[:32],
}


def write(path: Path, text: str) -> Path:
    """
    Write C{text} to C{path}, making its directory, and return C{path}.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, origin: dns.name.Name | None = None) -> str:
    """
    The message of the L{ZoneError} loading C{path} raises, checked to be
    one line.
    """
    with pytest.raises(ZoneError) as caught:
        load_zone(path, origin)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    return message


def rdata_texts(zone: dns.zone.Zone, name: str, rdtype: str) -> set[str]:
    """
    The rdata of C{name}/C{rdtype} in C{zone} as text, or an empty set.
    """
    rdataset = zone.get_rdataset(dns.name.from_text(name), rdtype)
    return {rdata.to_text() for rdata in rdataset} if rdataset else set()


def readable_types() -> list[dns.rdatatype.RdataType]:
    """
    Every record type dnspython knows, meta types (OPT, TSIG, ANY...) left
    out.
    """
    return [t for t in dns.rdatatype.RdataType if not dns.rdatatype.is_metatype(t)]


# --- reading -------------------------------------------------------------


def test_origin_and_ttl_directives(tmp_path: Path) -> None:
    """$ORIGIN completes relative names and $TTL gives records without a TTL their TTL."""
    path = write(
        tmp_path / "anything.zone",
        HEAD + "www  A  192.0.2.80\nshort 60 A 192.0.2.81\n$TTL 120\nlater A 192.0.2.82\n",
    )
    zone = load_zone(path)
    assert zone.origin == dns.name.from_text("t.")
    assert zone.get_rdataset(dns.name.from_text("www.t."), "A").ttl == 3600
    assert zone.get_rdataset(dns.name.from_text("short.t."), "A").ttl == 60
    assert zone.get_rdataset(dns.name.from_text("later.t."), "A").ttl == 120


def test_relative_and_absolute_names(tmp_path: Path) -> None:
    """Owner and rdata names are relative to the origin unless they end in a dot."""
    path = write(
        tmp_path / "t.zone",
        HEAD
        + "mail.t.  A   192.0.2.25\n"
        + "@        MX  10 mail\n"
        + "@        MX  20 mx.elsewhere.example.\n"
        + "$ORIGIN sub.t.\n"
        + "www      A   192.0.2.26\n",
    )
    zone = load_zone(path)
    assert rdata_texts(zone, "mail.t.", "A") == {"192.0.2.25"}
    assert rdata_texts(zone, "t.", "MX") == {"10 mail.t.", "20 mx.elsewhere.example."}
    assert rdata_texts(zone, "www.sub.t.", "A") == {"192.0.2.26"}


def test_include_relative_to_including_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$INCLUDE names a file relative to the directory of the file that includes it, at any depth."""
    zones = tmp_path / "zones"
    write(zones / "parts" / "hosts.inc", "www A 192.0.2.80\n$INCLUDE more/mail.inc\n")
    write(zones / "parts" / "more" / "mail.inc", "mail A 192.0.2.25\n")
    write(zones / "parts" / "sub.inc", "host A 192.0.2.90\n")
    path = write(
        zones / "t.zone",
        HEAD + "$INCLUDE parts/hosts.inc\n$INCLUDE parts/sub.inc sub.t.\nafter A 192.0.2.1\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    zone = load_zone(path)
    assert rdata_texts(zone, "www.t.", "A") == {"192.0.2.80"}
    assert rdata_texts(zone, "mail.t.", "A") == {"192.0.2.25"}
    assert rdata_texts(zone, "host.sub.t.", "A") == {"192.0.2.90"}
    # The including file's origin and owner resume after the include.
    assert rdata_texts(zone, "after.t.", "A") == {"192.0.2.1"}
    assert Path.cwd() == elsewhere


def test_include_error_names_the_included_file(tmp_path: Path) -> None:
    """A syntax error in an included file is reported with that file and its own line."""
    included = write(tmp_path / "parts" / "bad.inc", "; hosts\nok A 192.0.2.1\nbad A 192.0.2.300\n")
    path = write(tmp_path / "t.zone", HEAD + "$INCLUDE parts/bad.inc\n")
    message = refused(path)
    assert message.startswith(f"{included}:3: ")
    assert "bad A 192.0.2.300" in message


def test_include_of_a_missing_file(tmp_path: Path) -> None:
    """A missing $INCLUDE file is reported at the $INCLUDE line, with the missing file's name."""
    path = write(tmp_path / "t.zone", HEAD + "\n$INCLUDE nothere.inc\n")
    message = refused(path)
    assert message.startswith(f"{path}:7: ")
    assert str(tmp_path / "nothere.inc") in message
    assert "no such file" in message


def test_include_loop(tmp_path: Path) -> None:
    """A file that includes itself is refused instead of recursing until files run out."""
    write(tmp_path / "loop.inc", "$INCLUDE loop.inc\n")
    path = write(tmp_path / "t.zone", HEAD + "$INCLUDE loop.inc\n")
    message = refused(path)
    assert f"{tmp_path / 'loop.inc'}:1: " in message
    assert "$INCLUDE" in message


def test_include_not_utf8(tmp_path: Path) -> None:
    """An included file that is not UTF-8 is reported with its name and the line of the bad byte."""
    included = tmp_path / "latin1.inc"
    included.write_bytes(b"; ok\nname TXT \"caf\xe9\"\n")
    path = write(tmp_path / "t.zone", HEAD + "$INCLUDE latin1.inc\n")
    message = refused(path)
    assert message.startswith(f"{included}:2: ")
    assert "UTF-8" in message


def test_generate(tmp_path: Path) -> None:
    """$GENERATE makes one record per value of its range."""
    path = write(tmp_path / "t.zone", HEAD + "$GENERATE 1-3 host-$ A 192.0.2.$\n")
    zone = load_zone(path)
    for i in (1, 2, 3):
        assert rdata_texts(zone, f"host-{i}.t.", "A") == {f"192.0.2.{i}"}
    assert zone.get_node(dns.name.from_text("host-4.t.")) is None


def test_generate_outside_the_zone(tmp_path: Path) -> None:
    """$GENERATE owners outside the zone are refused, at the $GENERATE line."""
    path = write(tmp_path / "t.zone", HEAD + "$GENERATE 1-3 host-$.other. A 192.0.2.$\n")
    message = refused(path)
    assert message.startswith(f"{path}:6: ")
    assert "outside the zone" in message


def test_every_record_type(tmp_path: Path) -> None:
    """A zone with one record of every type dnspython can read from text loads, and keeps each record."""
    lines = [HEAD]
    expected: dict[str, dns.rdatatype.RdataType] = {}
    for rdtype in readable_types():
        name = dns.rdatatype.to_text(rdtype)
        if rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS):
            continue  # at the apex, from HEAD; NS elsewhere would be a cut
        owner = f"type-{name.lower().replace('_', '-')}"
        cls = dns.rdata.get_rdata_class(dns.rdataclass.IN, rdtype)
        if cls is dns.rdata.GenericRdata:
            # No presentation format of its own: RFC 3597's is the one.
            text = "\\# 4 c0000201"
        else:
            assert name in EXAMPLES, f"no example for {name}: add one"
            text = EXAMPLES[name]
        lines.append(f"{owner} {name} {text}\n")
        expected[owner] = rdtype
    lines.append("type65534 TYPE65534 \\# 3 abcdef\n")
    expected["type65534"] = dns.rdatatype.RdataType.make(65534)
    zone = load_zone(write(tmp_path / "t.zone", "".join(lines)))
    for owner, rdtype in expected.items():
        node = zone.get_node(dns.name.from_text(f"{owner}.t."))
        assert node is not None, owner
        # One rdataset (RRSIG and SIG are filed under the type they cover).
        assert [(r.rdtype, len(r)) for r in node.rdatasets] == [(rdtype, 1)], owner
    soa = zone.get_rdataset(dns.name.from_text("t."), "SOA")
    assert soa is not None and soa[0].to_text() == EXAMPLES["SOA"]


def test_origin_from_the_file_name(tmp_path: Path) -> None:
    """Without $ORIGIN the file name gives the origin: NAME.zone and db.NAME."""
    body = "$TTL 300\n@ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
    for filename, origin in [("example.test.zone", "example.test."), ("db.other.test", "other.test.")]:
        zone = load_zone(write(tmp_path / filename, body))
        assert zone.origin == dns.name.from_text(origin)
        assert rdata_texts(zone, f"ns1.{origin}", "A") == {"192.0.2.1"}


def test_origin_directive_beats_the_file_name(tmp_path: Path) -> None:
    """A leading $ORIGIN, not the file name, gives the origin."""
    zone = load_zone(write(tmp_path / "example.test.zone", HEAD))
    assert zone.origin == dns.name.from_text("t.")


@pytest.mark.parametrize(
    ("filename", "origin"),
    [
        ("example.test.zone", "example.test."),
        ("/some/dir/corner.test.zone", "corner.test."),
        ("db.example.test", "example.test."),
        ("example.test", "example.test."),
        ("example.test..zone", "example.test."),
    ],
)
def test_origin_from_filename(filename: str, origin: str) -> None:
    """origin_from_filename drops the directory and a .zone suffix or db. prefix."""
    assert origin_from_filename(filename) == dns.name.from_text(origin)


def test_no_origin_anywhere(tmp_path: Path) -> None:
    """A file named .zone with no $ORIGIN is refused instead of serving the root."""
    body = "$TTL 300\n@ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
    message = refused(write(tmp_path / ".zone", body))
    assert message.startswith(f"{tmp_path / '.zone'}: ")
    assert "origin" in message


def test_named_origin(tmp_path: Path) -> None:
    """named_origin gives a broken file's leading $ORIGIN, else its file name's origin, else None."""
    assert named_origin(write(tmp_path / "x.zone", HEAD + "www A 192.0.2.300\n")) == dns.name.from_text("t.")
    assert named_origin(write(tmp_path / "y.test.zone", "$TTL 1\n@ A 1\n")) == dns.name.from_text("y.test.")
    assert named_origin(tmp_path / "missing.test.zone") == dns.name.from_text("missing.test.")
    assert named_origin(write(tmp_path / ".zone", "@ A 1\n")) is None


def test_load_zone_text() -> None:
    """load_zone_text reads a zone from a string with the origin given as text."""
    zone = load_zone_text(HEAD.replace("$ORIGIN t.\n", "") + "www A 192.0.2.80\n", "t.")
    assert rdata_texts(zone, "www.t.", "A") == {"192.0.2.80"}
    with pytest.raises(ZoneError, match=r"^<string>:2: "):
        load_zone_text("$TTL 60\n@ SOA ns1 hostmaster 1 2 3 4 5 6 7\n", "t.")
    with pytest.raises(ZoneError, match="origin"):
        load_zone_text("$TTL 60\n", None)


# --- checks ----------------------------------------------------------------


def test_syntax_error(tmp_path: Path) -> None:
    """A record that cannot be read is reported with its own line (not the next) and its text."""
    path = write(tmp_path / "t.zone", HEAD + "www A 192.0.2.300\nok A 192.0.2.1\n")
    message = refused(path)
    assert message.startswith(f"{path}:6: ")
    assert "www A 192.0.2.300" in message


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("x MX ten mail", "integer"),
        ("x FOO bar", "FOO"),
        ("x CH TXT hi", "class"),
        ('x TXT "open', "quoted"),
    ],
)
def test_syntax_error_reasons(tmp_path: Path, record: str, reason: str) -> None:
    """Each malformed record is refused at its line with a reason."""
    path = write(tmp_path / "t.zone", HEAD + record + "\nok A 192.0.2.1\n")
    message = refused(path)
    assert message.startswith(f"{path}:6: ")
    assert reason in message


def test_error_in_a_multi_line_record(tmp_path: Path) -> None:
    """An error in a record spread over lines with parentheses is reported at its first line."""
    path = write(tmp_path / "t.zone", HEAD + "x SOA ns1 hostmaster (\n 1 2\n 3 4 )\n")
    assert refused(path).startswith(f"{path}:6: ")


def test_directive_error(tmp_path: Path) -> None:
    """A bad $TTL is reported at its line."""
    path = write(tmp_path / "t.zone", HEAD + "$TTL forever\n")
    message = refused(path)
    assert message.startswith(f"{path}:6: ")
    assert "TTL" in message


def test_no_soa(tmp_path: Path) -> None:
    """A zone without an SOA at its apex is refused."""
    path = write(tmp_path / "t.zone", "$ORIGIN t.\n$TTL 60\n@ NS ns1\nns1 A 192.0.2.1\n")
    message = refused(path)
    assert message.startswith(f"{path}: ")
    assert "no SOA" in message


def test_no_ns_at_the_apex(tmp_path: Path) -> None:
    """A zone without NS records at its apex is refused."""
    path = write(tmp_path / "t.zone", "$ORIGIN t.\n$TTL 60\n@ SOA ns1 hostmaster 1 2 3 4 5\n")
    message = refused(path)
    assert message.startswith(f"{path}: ")
    assert "no NS" in message


def test_soa_off_the_apex(tmp_path: Path) -> None:
    """An SOA anywhere but the apex is refused at its line."""
    path = write(tmp_path / "t.zone", HEAD + "sub SOA ns1 hostmaster 1 2 3 4 5\n")
    message = refused(path)
    assert message.startswith(f"{path}:6: ")
    assert "SOA" in message and "sub.t." in message and "apex" in message


def test_two_soa_records(tmp_path: Path) -> None:
    """A second, different SOA at the apex is refused instead of replacing the first."""
    path = write(tmp_path / "t.zone", HEAD + "@ SOA ns1 hostmaster 2 7200 3600 1209600 300\n")
    message = refused(path)
    assert message.startswith(f"{path}:6: ")
    assert "more than one SOA" in message


@pytest.mark.parametrize(
    "records",
    [
        "alias CNAME www\nalias A 192.0.2.1\n",
        "alias A 192.0.2.1\nalias CNAME www\n",
        "alias CNAME www\nalias MX 10 mail\n",
        "@ CNAME www\n",
        "alias DNAME www\nalias CNAME www\n",
    ],
    ids=["cname-then-a", "a-then-cname", "cname-then-mx", "cname-at-apex", "dname-then-cname"],
)
def test_cname_beside_other_data(tmp_path: Path, records: str) -> None:
    """A CNAME beside other data is refused at the second record's line, whichever comes first."""
    path = write(tmp_path / "t.zone", HEAD + records)
    message = refused(path)
    line = 5 + records.count("\n")
    assert message.startswith(f"{path}:{line}: ")
    assert "CNAME and other data" in message


def test_cname_beside_dnssec_records(tmp_path: Path) -> None:
    """RRSIG and NSEC may sit beside a CNAME (RFC 4035 2.5)."""
    path = write(
        tmp_path / "t.zone",
        HEAD
        + "alias CNAME www\n"
        + f"alias RRSIG CNAME 13 2 3600 20300101000000 20200101000000 1 t. {B64}\n"
        + "alias NSEC www.t. CNAME RRSIG NSEC\n",
    )
    zone = load_zone(path)
    assert rdata_texts(zone, "alias.t.", "CNAME") == {"www.t."}


def test_two_cnames(tmp_path: Path) -> None:
    """Two different CNAMEs at one name are refused; the same one twice is one record."""
    path = write(tmp_path / "t.zone", HEAD + "alias CNAME www\nalias CNAME mail\n")
    message = refused(path)
    assert message.startswith(f"{path}:7: ")
    assert "more than one CNAME" in message
    same = write(tmp_path / "same.zone", HEAD + "alias CNAME www\nalias CNAME www.t.\n")
    assert rdata_texts(load_zone(same), "alias.t.", "CNAME") == {"www.t."}


@pytest.mark.parametrize(
    "records",
    ["www.example.org. A 192.0.2.1\n", "$ORIGIN example.org.\nwww A 192.0.2.1\n", "t2. A 192.0.2.1\n"],
    ids=["absolute", "after-origin", "sibling"],
)
def test_owner_outside_the_zone(tmp_path: Path, records: str) -> None:
    """A record whose owner is outside the zone is refused, not silently dropped."""
    path = write(tmp_path / "t.zone", HEAD + records)
    message = refused(path)
    assert message.startswith(f"{path}:{5 + records.count(chr(10))}: ")
    assert "outside the zone t." in message


def test_glue_below_a_cut(tmp_path: Path) -> None:
    """Addresses below a zone cut (glue) and a DS at the cut load."""
    path = write(
        tmp_path / "t.zone",
        HEAD
        + "sub       NS   ns1.sub\n"
        + f"sub       DS   12345 13 2 {H64}\n"
        + "ns1.sub   A    192.0.2.153\n"
        + "ns1.sub   AAAA 2001:db8::153\n",
    )
    zone = load_zone(path)
    assert rdata_texts(zone, "ns1.sub.t.", "A") == {"192.0.2.153"}


@pytest.mark.parametrize(
    ("records", "line", "words"),
    [
        ("sub NS ns1.sub\nns1.sub A 192.0.2.1\nns1.sub TXT hi\n", 8, ["TXT", "ns1.sub.t.", "below"]),
        ("sub NS ns1.sub\ndeep.down.sub MX 10 mail\n", 7, ["MX", "deep.down.sub.t.", "below"]),
        ("sub NS ns1.sub\nchild.sub NS ns.elsewhere.\n", 7, ["NS", "child.sub.t.", "below"]),
    ],
    ids=["txt", "deep-mx", "ns-below-cut"],
)
def test_data_below_a_cut(tmp_path: Path, records: str, line: int, words: list[str]) -> None:
    """Anything but an address below a zone cut is refused at its line."""
    path = write(tmp_path / "t.zone", HEAD + records)
    message = refused(path)
    assert message.startswith(f"{path}:{line}: ")
    for word in words:
        assert word in message


@pytest.mark.parametrize("record", ["sub TXT hi", "sub MX 10 mail", "sub CNAME www"])
def test_data_at_a_cut(tmp_path: Path, record: str) -> None:
    """Data at a zone cut other than NS, DS and glue is refused at its line."""
    path = write(tmp_path / "t.zone", HEAD + "sub NS ns.elsewhere.\n" + record + "\n")
    message = refused(path)
    assert message.startswith(f"{path}:7: ")


def test_missing_file(tmp_path: Path) -> None:
    """A zone file that does not exist is refused with its name and the reason."""
    path = tmp_path / "nothere.zone"
    assert refused(path) == f"{path}: cannot read zone file: no such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A directory given as a zone file is refused with the reason."""
    path = tmp_path / "dir.zone"
    path.mkdir()
    assert refused(path) == f"{path}: cannot read zone file: is a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    """A zone file without read permission is refused with the reason."""
    path = write(tmp_path / "t.zone", HEAD)
    path.chmod(0)
    assert refused(path) == f"{path}: cannot read zone file: permission denied"


def test_not_utf8(tmp_path: Path) -> None:
    """A zone file that is not UTF-8 is refused with the line of the bad byte."""
    path = tmp_path / "t.zone"
    path.write_bytes(HEAD.encode() + b"; caf\xe9\n")
    message = refused(path)
    assert message.startswith(f"{path}:6: ")
    assert "UTF-8" in message and "0xe9" in message


def test_message_is_one_line(tmp_path: Path) -> None:
    """Even a file name with a line break in it gives a one-line message."""
    path = tmp_path / "bad\nname.zone"
    message = refused(path)
    assert "bad\\nname.zone" in message


# --- zone_files --------------------------------------------------------------


def test_zone_files(tmp_path: Path) -> None:
    """zone_files lists the regular *.zone files of a directory, sorted, and nothing else."""
    for name in ("b.test.zone", "a.test.zone", "c.test.zone"):
        write(tmp_path / name, HEAD)
    write(tmp_path / "notes.txt", "hello\n")
    write(tmp_path / "part.inc", "www A 192.0.2.1\n")
    write(tmp_path / "a.test.zone.bak", HEAD)
    write(tmp_path / ".hidden.zone", HEAD)
    (tmp_path / "dir.zone").mkdir()
    (tmp_path / "dangling.zone").symlink_to(tmp_path / "nothere")
    assert zone_files(tmp_path) == [
        tmp_path / "a.test.zone",
        tmp_path / "b.test.zone",
        tmp_path / "c.test.zone",
    ]


def test_zone_files_missing_directory(tmp_path: Path) -> None:
    """A zone directory that does not exist gives a one-line ZoneError naming it."""
    with pytest.raises(ZoneError) as caught:
        zone_files(tmp_path / "nothere")
    assert str(caught.value) == (
        f"{tmp_path / 'nothere'}: cannot list zone directory: no such file or directory"
    )
