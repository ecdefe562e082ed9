#!/usr/bin/env python3
"""An HTTP/1.1 backend for the HTTP/2 tests (keep-alive, threads):
  GET  /bytes/N     N bytes of a repeating pattern, with Content-Length
  GET  /chunked/N   the same N bytes, chunked
  GET  /headers     the request's headers as JSON (a list of [name, value])
  GET  /slow/MS     "late" after MS milliseconds
  POST /sha         {"length": n, "sha256": hex} of the body (Content-Length or chunked)

Usage: h2_backend.py PORT
"""
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern(n):
    while n > 0:
        piece = PATTERN[: min(n, len(PATTERN))]
        n -= len(piece)
        yield piece


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_body(self, body, content_type="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.split("/")
        try:
            if parts[1] == "bytes":
                n = int(parts[2])
                self.send_response(200)
                self.send_header("Content-Length", str(n))
                self.end_headers()
                for piece in pattern(n):
                    self.wfile.write(piece)
            elif parts[1] == "chunked":
                n = int(parts[2])
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in pattern(n):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            elif parts[1] == "slow":
                time.sleep(int(parts[2]) / 1000)
                self.send_body(b"late", "text/plain")
            elif parts[1] == "headers":
                self.send_body(json.dumps([[k, v] for k, v in self.headers.items()]).encode())
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_HEAD(self):
        parts = self.path.split("/")
        self.send_response(200)
        self.send_header("Content-Length", parts[2] if parts[1] == "bytes" else "0")
        self.end_headers()

    def do_POST(self):
        digest = hashlib.sha256()
        length = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                digest.update(data)
                length += len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                data = self.rfile.read(min(left, 65536))
                if not data:
                    break
                digest.update(data)
                length += len(data)
                left -= len(data)
        self.send_body(json.dumps({"length": length, "sha256": digest.hexdigest()}).encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
