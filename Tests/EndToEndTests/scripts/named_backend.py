#!/usr/bin/env python3
"""A plain HTTP backend that answers every GET with its NAME (keep-alive), so a test can tell
which backend a route reached. With FLAG_FILE, it cannot start again once that file exists (a
crash that stays down).

Usage: named_backend.py PORT NAME [FLAG_FILE]
"""
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, name = int(sys.argv[1]), sys.argv[2].encode()
if len(sys.argv) > 3 and os.path.exists(sys.argv[3]):
    sys.exit("named_backend: flag file present, refusing to start")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(name)))
        self.end_headers()
        self.wfile.write(name)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
