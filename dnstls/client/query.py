# -*- test-case-name: tests.client.test_query -*-
"""
C{dnstls-query}: ask one question over UDP, TCP, DNS over TLS or the
STARTTLS upgrade, and print the reply as dig does, or as JSON.

    dnstls-query @127.0.0.1 -p 5353 +starttls --ca ca.pem --hostname dns.example.test www.example.test A

It is how a user pokes the STARTTLS upgrade by hand, since kdig and dig do
not speak it.  Exit status: 0 with a reply (whatever its RCODE), 9 when no
reply came (dig's code for that), 1 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnstls.client import TRANSPORTS, Client, ClientError, TLSAuth
from dnstls.transport.upgrade import TO

EXIT_NO_REPLY = 9
EXIT_USAGE = 1
_DEFAULT_PORT = {"udp": 53, "tcp": 53, "starttls": 53, "tls": 853}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnstls-query",
        description="Ask a DNS server one question over udp, tcp, tls or starttls.",
        epilog="Arguments may mix, as with dig: @SERVER NAME TYPE CLASS +TRANSPORT.",
        prefix_chars="-+",
    )
    parser.add_argument("words", nargs="+", metavar="@SERVER | NAME | TYPE | CLASS")
    parser.add_argument("-p", "--port", type=int, help="server port [default: 53, 853 for +tls]")
    for transport in TRANSPORTS:
        parser.add_argument(
            f"+{transport}", dest="transport", action="store_const", const=transport,
            help=f"query over {transport}" + (" [default]" if transport == "udp" else ""),
        )
    parser.add_argument("--ca", help="PEM file of the CA that signed the server's certificate")
    parser.add_argument("--pin", help="the server's SHA-256 SPKI pin, base64")
    parser.add_argument("--hostname", help="the name the server's certificate must carry (and SNI)")
    parser.add_argument(
        "--opportunistic", action="store_true",
        help="with +starttls, fall back to clear text when the server declines",
    )
    parser.add_argument("--norecurse", action="store_true", help="clear RD")
    parser.add_argument("--dnssec", action="store_true", help="set DO")
    parser.add_argument("--padding", action="store_true", help="ask for padding (RFC 7830)")
    parser.add_argument("--keepalive", action="store_true", help="ask for edns-tcp-keepalive")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds [default: 5]")
    parser.add_argument("--json", action="store_true", help="print JSON instead of dig's format")
    return parser


def _split_words(words: Sequence[str]) -> tuple[str, str, str, str]:
    server, name, qtype, qclass = "127.0.0.1", "", "A", "IN"
    rest: list[str] = []
    for word in words:
        if word.startswith("@"):
            server = word[1:]
        elif name and _is_type(word):
            qtype = word.upper()
        elif name and _is_class(word):
            qclass = word.upper()
        else:
            rest.append(word)
            name = name or word
    if len(rest) != 1:
        raise ValueError("give exactly one name to ask about")
    return server, name, qtype, qclass


def _is_type(word: str) -> bool:
    try:
        dns.rdatatype.from_text(word)
    except dns.rdatatype.UnknownRdatatype:
        return False
    return True


def _is_class(word: str) -> bool:
    try:
        dns.rdataclass.from_text(word)
    except dns.rdataclass.UnknownRdataclass:
        return False
    return True


def build_query(name: str, qtype: str, qclass: str, options: argparse.Namespace) -> dns.message.Message:
    """
    The query the options describe: EDNS always (so TO, DO, padding and
    keepalive can be carried), RD unless C{--norecurse}.
    """
    edns_options: list[dns.edns.Option] = []
    if options.keepalive:
        edns_options.append(dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b""))
    query = dns.message.make_query(
        name, qtype, qclass, use_edns=0, want_dnssec=options.dnssec, options=edns_options,
        pad=128 if options.padding else 0,
    )
    if options.norecurse:
        query.flags &= ~dns.flags.RD
    return query


def dig_format(reply: dns.message.Message, server: str, port: int, transport: str) -> str:
    """
    C{reply} in the layout dig prints.
    """
    counts = (len(reply.question), _count(reply.answer), _count(reply.authority),
              _count(reply.additional) + (1 if reply.edns >= 0 else 0))
    flags = dns.flags.to_text(reply.flags).lower()
    lines = [
        f";; ->>HEADER<<- opcode: {dns.opcode.to_text(reply.opcode())}, "
        f"status: {dns.rcode.to_text(reply.rcode())}, id: {reply.id}",
        f";; flags: {flags}; QUERY: {counts[0]}, ANSWER: {counts[1]}, "
        f"AUTHORITY: {counts[2]}, ADDITIONAL: {counts[3]}",
    ]
    if reply.edns >= 0:
        edns_flags = dns.flags.edns_to_text(reply.ednsflags & ~TO).lower()
        if reply.ednsflags & TO:
            edns_flags = (edns_flags + " to").strip()
        lines += ["", ";; OPT PSEUDOSECTION:",
                  f"; EDNS: version: {reply.edns}, flags: {edns_flags}; udp: {reply.payload}"]
        for option in reply.options:
            lines.append(f"; {dns.edns.OptionType.to_text(option.otype)}: {option_text(option)}")
    lines += ["", ";; QUESTION SECTION:"]
    lines += [f";{q.name}\t\t{dns.rdataclass.to_text(q.rdclass)}\t{dns.rdatatype.to_text(q.rdtype)}"
              for q in reply.question]
    for title, section in (("ANSWER", reply.answer), ("AUTHORITY", reply.authority),
                           ("ADDITIONAL", reply.additional)):
        if section:
            lines += ["", f";; {title} SECTION:"]
            lines += [rrset.to_text() for rrset in section]
    lines += ["", f";; SERVER: {server}#{port}({transport})", f";; MSG SIZE  rcvd: {len(reply.to_wire())}"]
    return "\n".join(lines)


def option_text(option: dns.edns.Option) -> str:
    """
    An EDNS option for people: the keepalive timeout in seconds, the
    padding's length, or dnspython's text for the others.
    """
    data = option.to_wire() or b""
    if option.otype == dns.edns.OptionType.KEEPALIVE:
        if len(data) == 2:
            return f"{int.from_bytes(data, 'big') / 10:.1f} s"
        return "(asked)" if not data else data.hex()
    if option.otype == dns.edns.OptionType.PADDING:
        return f"{len(data)} octets"
    return option.to_text()


def _count(section: list[dns.rrset.RRset]) -> int:
    return sum(len(rrset) for rrset in section)


def json_form(reply: dns.message.Message, client: Client) -> dict[str, Any]:
    """
    C{reply} as plain data.
    """
    return {
        "server": client.host,
        "port": client.port,
        "transport": client.transport,
        "upgraded": client.last_upgraded if client.transport == "starttls" else None,
        "id": reply.id,
        "rcode": dns.rcode.to_text(reply.rcode()),
        "flags": dns.flags.to_text(reply.flags).split(),
        "edns": None if reply.edns < 0 else {
            "version": reply.edns,
            "payload": reply.payload,
            "flags": dns.flags.edns_to_text(reply.ednsflags & ~TO).split()
            + (["TO"] if reply.ednsflags & TO else []),
            "options": [
                {"code": int(o.otype), "name": dns.edns.OptionType.to_text(o.otype),
                 "text": option_text(o)} for o in reply.options
            ],
        },
        "question": [
            {"name": q.name.to_text(), "type": dns.rdatatype.to_text(q.rdtype),
             "class": dns.rdataclass.to_text(q.rdclass)} for q in reply.question
        ],
        **{
            name: [line for rrset in section for line in rrset.to_text().splitlines()]
            for name, section in (("answer", reply.answer), ("authority", reply.authority),
                                  ("additional", reply.additional))
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run C{dnstls-query}; return its exit status.
    """
    parser = _parser()
    try:
        options = parser.parse_intermixed_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else 0
    transport = options.transport or "udp"
    try:
        server, name, qtype, qclass = _split_words(options.words)
        query = build_query(name, qtype, qclass, options)
    except (ValueError, dns.exception.DNSException) as e:
        print(f"dnstls-query: {e}", file=sys.stderr)
        return EXIT_USAGE
    port = options.port if options.port is not None else _DEFAULT_PORT[transport]
    auth = TLSAuth(hostname=options.hostname, ca_file=options.ca, pin=options.pin)
    client = Client(server, port, transport, auth, timeout=options.timeout,
                    strict=not options.opportunistic)
    try:
        reply = client.query(query)
    except ClientError as e:
        print(f"dnstls-query: no reply: {e}", file=sys.stderr)
        return EXIT_NO_REPLY
    if options.json:
        print(json.dumps(json_form(reply, client), indent=2))
    else:
        print(dig_format(reply, server, port, transport))
        if transport == "starttls":
            print(f";; UPGRADED: {'yes' if client.last_upgraded else 'no'}")
    return 0


def run() -> None:
    """
    The console entry point.
    """
    raise SystemExit(main())
