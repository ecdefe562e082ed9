#!/usr/bin/env python3
"""Malformed, odd and well-formed HTTP/1.x requests (pipelined, split into small writes, cut short,
with WebSocket upgrades and frames), each on its own TLS connection to Ferry, ended in one of
three ways: a FIN, a reset, or a plain close after reading. Bounded in count and time; the seed
makes a run repeatable. Prints one JSON line: {"connections": n, "answers": {"400": k, ...},
"unanswered": m, "seconds": s}. Nothing here decides pass or fail: the test reads Ferry's status.

usage: fuzz_requests.py PORT CONNECTIONS SEED [MAX_SECONDS]
"""
import base64
import collections
import json
import os
import random
import socket
import ssl
import struct
import sys
import time

port, connections, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
max_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 60
rnd = random.Random(seed)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE

PATHS = ["/", "/tts-ws/tts/wav/none.wav", "/tts-ws/tts/mp3/x.mp3", "/tts-ws/tts", "/index.html"]
ODD_PATHS = ["/tts-ws/tts/wav/../x", "/%2e%2e/", "/a%00b", "http://h/tts-ws/tts/wav/x", "*", "/%zz", "//x",
             "/?" + "q" * 200]
ODD_METHODS = ["PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PATCH", "FOO", "get", ""]
ODD_VERSIONS = ["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.2", ""]
SANE = [("Accept", "*/*"), ("User-Agent", "fuzz"), ("Connection", "keep-alive"), ("Content-Length", "5"),
        ("Transfer-Encoding", "chunked"), ("Expect", "100-continue"), ("Range", "bytes=0-10")]
ODD = [("Host", ""), ("Host", "a, b"), ("Content-Length", "-1"), ("Content-Length", "99999999999999999999"),
       ("Content-Length", "3, 4"), ("Transfer-Encoding", "gzip, chunked"), ("Transfer-Encoding", "chunked, gzip"),
       ("Connection", "close"), ("Connection", "content-length, transfer-encoding"), ("Upgrade", "websocket"),
       ("Upgrade", "h2c"), ("Sec-WebSocket-Version", "8"), ("Expect", "nope"), ("X-Long", "v" * 9000),
       ("Range", "bytes=9-1"), ("Bad Header", "x"), ("X-Ctl", "a\x01b"), ("", "empty"), ("X-Fold", "a\r\n b")]
CHUNKS = ["5\r\nhello\r\n", "0\r\n\r\n", "zz\r\n", "3;ext=1\r\nabc\r\n", "FFFFFFFFFFFFFFFFF\r\n", "1\r\nab\r\n",
          "0\r\nTrailer: x\r\n\r\n"]


def one_request():
    if rnd.random() < 0.05:
        return os.urandom(rnd.randint(1, 300))
    method = rnd.choice(ODD_METHODS) if rnd.random() < 0.2 else rnd.choice(["GET", "GET", "POST", "HEAD"])
    path = rnd.choice(ODD_PATHS) if rnd.random() < 0.3 else rnd.choice(PATHS)
    version = rnd.choice(ODD_VERSIONS) if rnd.random() < 0.1 else "HTTP/1.1"
    headers = [("Host", "localhost")] if rnd.random() < 0.95 else []
    for _ in range(rnd.randint(0, 4)):
        headers.append(rnd.choice(ODD) if rnd.random() < 0.15 else rnd.choice(SANE))
    if rnd.random() < 0.2:
        headers += [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()), ("Sec-WebSocket-Version", "13")]
    end = "\r\n" if rnd.random() < 0.97 else rnd.choice(["\n", "\r"])
    text = f"{method} {path} {version}".strip() + end + "".join(f"{k}: {v}{end}" for k, v in headers) + end
    names = {k.lower(): v for k, v in headers}
    if names.get("transfer-encoding", "").endswith("chunked"):
        text += "".join(rnd.choice(CHUNKS) for _ in range(rnd.randint(0, 3))) + rnd.choice(["0\r\n\r\n", ""])
    elif "content-length" in names:
        text += "x" * rnd.choice([0, 3, 5, 10])
    data = text.encode("utf-8", "surrogateescape")
    if rnd.random() < 0.05:
        i = rnd.randrange(len(data))
        data = data[:i] + bytes([rnd.randrange(256)]) + data[i + 1:]
    if rnd.random() < 0.05:
        data = data[:rnd.randrange(len(data) + 1)]
    return data


answers = collections.Counter()
unanswered = 0
started = time.time()
done = 0
for _ in range(connections):
    if time.time() - started > max_seconds:
        break
    done += 1
    payload = b"".join(one_request() for _ in range(rnd.choice([1, 1, 1, 2, 3])))
    steps = rnd.choice([None, 1, 7, 64])
    frame = b""
    if b"websocket" in payload.lower() and rnd.random() < 0.5:
        mask, message = os.urandom(4), os.urandom(rnd.randint(0, 125))
        frame = bytes([0x82, 0x80 | len(message)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(message))
        if rnd.random() < 0.2:
            frame = os.urandom(50)
    ending = rnd.random()
    got = b""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn = context.wrap_socket(raw, server_hostname="localhost")
        conn.settimeout(0.3)
        for i in range(0, len(payload), steps or len(payload) or 1):
            conn.sendall(payload[i:i + (steps or len(payload))])
        if frame:
            conn.sendall(frame)
        if ending < 0.2:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset at close
        elif ending < 0.5:
            socket.socket(fileno=os.dup(conn.fileno())).shutdown(socket.SHUT_WR)  # a FIN (no close_notify)
        try:
            while len(got) < 1_000_000:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ssl.SSLError, ConnectionError):
            pass
        conn.close()
    except (OSError, ssl.SSLError):
        pass
    statuses = [line[9:12].decode("latin-1") for line in got.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    if not statuses:
        unanswered += 1
    for status in statuses:
        answers[status] += 1
print(json.dumps({"connections": done, "answers": dict(answers), "unanswered": unanswered,
                  "seconds": round(time.time() - started, 1)}))
