#!/usr/bin/env python3
"""A plain HTTP backend that cannot start again once FLAG_FILE exists (a crash that stays down):
answers every GET with 200 and a short body, keep-alive.

Usage: flaky_backend.py PORT FLAG_FILE
"""
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, flag = int(sys.argv[1]), sys.argv[2]
if os.path.exists(flag):
    sys.exit("flaky_backend: flag file present, refusing to start")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"app\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
