#!/usr/bin/env python3
"""Frames that travel with the WebSocket handshake, through a proxy on 127.0.0.1:PORT.

  client-early      the upgrade request and a first frame in one write; waits for its echo
  client-fin        the upgrade request and a FIN (shutdown of the sending side) in one go; waits
                    for the 101 and for the connection to end
  server-greeting   a plain upgrade; waits for the frame the server sends with its 101
  server-bye        a plain upgrade; waits for the frame the server sends just before it closes,
                    and for the connection to end

Usage: early_frames_client.py PORT PATH MODE — prints one JSON line:
{"switched": bool, "frame": str|null, "closed": bool|null, "seconds": float}
"""
import base64
import json
import os
import socket
import sys
import time

port, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
key = base64.b64encode(os.urandom(16)).decode()
request = (f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
mask = os.urandom(4)
payload = b"early"
frame = bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

started = time.time()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.settimeout(3)
s.sendall(request + (frame if mode == "client-early" else b""))
if mode == "client-fin":
    s.shutdown(socket.SHUT_WR)
received = b""
result = {"switched": False, "frame": None, "closed": None}
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            result["closed"] = True
            break
        received += chunk
        if b"\r\n\r\n" in received:
            head, rest = received.split(b"\r\n\r\n", 1)
            result["switched"] = head.startswith(b"HTTP/1.1 101")
            if len(rest) >= 2 and len(rest) >= 2 + (rest[1] & 0x7F):
                result["frame"] = rest[2:2 + (rest[1] & 0x7F)].decode("latin-1")
                if mode in ("client-early", "server-greeting"):
                    break
except socket.timeout:
    if mode in ("client-fin", "server-bye"):
        result["closed"] = False
result["seconds"] = round(time.time() - started, 2)
print(json.dumps(result))
