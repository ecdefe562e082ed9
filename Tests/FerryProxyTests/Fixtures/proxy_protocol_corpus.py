#!/usr/bin/env python3
"""PROXY protocol headers and what the `proxy-protocol` library (the reference) makes of each:
valid v1/v2 headers of every family, with TLVs (CRC32C included), then seeded mutations of them
(byte flips, wrong lengths, cut short). Prints one JSON object per line:
{"hex": ..., "expected": "proxied ADDRESS PORT" | "local" | "invalid" | "incomplete", "length": N}
(length: where the header ends, when it ends before the bytes do).

usage: proxy_protocol_corpus.py [COUNT]   (mutations; fixed seed)
"""
import json
import random
import struct
import sys
from ipaddress import IPv4Address, IPv6Address

from proxyprotocol import ProxyProtocolChecksumError, ProxyProtocolIncompleteError, ProxyProtocolSyntaxError
from proxyprotocol.result import (ProxyResultIPv4, ProxyResultIPv6, ProxyResultLocal, ProxyResultUnix,
                                  ProxyResultUnknown)
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def v2(command, family, addresses, tlvs=b"", checksum=False):
    payload = addresses + tlvs
    if checksum:
        payload += b"\x04\x00\x04\x00\x00\x00\x00"
    header = SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(payload)) + payload
    if checksum:
        value = crc32c(header)
        header = header[:-4] + struct.pack(">I", value)
    return header


def reference(data):
    try:
        parser = ProxyProtocolV2() if data[:1] == b"\r" else ProxyProtocolV1()
        result = parser.unpack(data)
    except (ProxyProtocolIncompleteError,):
        return "incomplete"
    except (ProxyProtocolSyntaxError, ProxyProtocolChecksumError, ValueError, struct.error, IndexError):
        return "invalid"
    except Exception as error:  # the reference failing in another way is a refusal too
        return "invalid"
    if isinstance(result, (ProxyResultIPv4, ProxyResultIPv6)):
        address, port = result.source
        return f"proxied {address} {port}"
    if isinstance(result, (ProxyResultLocal, ProxyResultUnknown, ProxyResultUnix)):
        return "local"
    return "invalid"


def valid_headers():
    v4 = struct.pack(">4s4sHH", IPv4Address("192.0.2.10").packed, IPv4Address("10.1.2.3").packed, 51234, 443)
    v6 = struct.pack(">16s16sHH", IPv6Address("2001:db8::17").packed, IPv6Address("2001:db8::1").packed, 1, 65535)
    unix = b"/run/a.sock".ljust(108, b"\0") + b"/run/b.sock".ljust(108, b"\0")
    tlvs = b"\x01\x00\x02h2" + b"\xe0\x00\x03abc" + b"\x05\x00\x00"
    return [
        b"PROXY TCP4 192.0.2.10 10.1.2.3 51234 443\r\n",
        b"PROXY TCP6 2001:db8::17 2001:db8::1 1 65535\r\n",
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        v2(1, 0x11, v4),
        v2(1, 0x21, v6),
        v2(1, 0x11, v4, tlvs),
        v2(1, 0x11, v4, tlvs, checksum=True),
        v2(1, 0x21, v6, checksum=True),
        v2(0, 0x00, b""),
        v2(0, 0x11, v4),
        v2(1, 0x00, b""),
        v2(1, 0x31, unix),
        v2(1, 0x12, v4),
    ]


def by_rule(data):
    """The reference reads a v2 header from the buffer it is given and ignores the length field,
    which on a stream is what says where the header ends; so when the field disagrees with the
    buffer, the expected outcome is the specification's: more bytes needed when it claims more,
    else the header ends early (its address block must still fit)."""
    declared = struct.unpack(">H", data[14:16])[0]
    if 16 + declared > len(data):
        return "incomplete"
    return reference(data[:16 + declared])


def mutate(rng, data):
    data = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0 and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1 and len(data) > 16 and data[:1] == b"\r":
        struct.pack_into(">H", data, 14, rng.choice([0, 1, 11, len(data) - 16 + rng.randrange(-4, 5), 65535]))
        return bytes(data), True
    elif kind == 2 and data:
        del data[rng.randrange(len(data))]
    elif kind == 3:
        data = data[: rng.randrange(len(data) + 1)]
    else:
        data[rng.randrange(len(data) + 1):rng.randrange(len(data) + 1)] = bytes(rng.randrange(256) for _ in range(3))
    # Other mutations keep a v2 length field consistent with the bytes (see by_rule); cut-short
    # headers (kind 3) keep theirs: they must ask for more.
    if kind != 3 and len(data) >= 16 and bytes(data[:12]) == SIGNATURE:
        struct.pack_into(">H", data, 14, len(data) - 16)
    return bytes(data), kind == 3


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rng = random.Random(20261206)
    cases = valid_headers()
    for case in cases:
        print(json.dumps({"hex": case.hex(), "expected": reference(case)}))
    for _ in range(count):
        case, length_matters = mutate(rng, rng.choice(valid_headers()))
        is_v2 = len(case) >= 16 and case[:12] == SIGNATURE
        expected = by_rule(case) if length_matters and is_v2 else reference(case)
        length = 16 + struct.unpack(">H", case[14:16])[0] if length_matters and is_v2 else len(case)
        end = case.find(b"\r\n")
        if case[:1] == b"P" and 0 <= end < len(case) - 2:
            # A v1 line ends at its CRLF; what follows is the connection's data.
            expected, length = reference(case[:end + 2]), end + 2
        print(json.dumps({"hex": case.hex(), "expected": expected, "length": length}))


main()
