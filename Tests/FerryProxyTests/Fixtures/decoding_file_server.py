#!/usr/bin/env python3
"""Python's own http.server serving DIR: it percent-decodes the path (%2F included) before it
resolves dot segments, as many backends do. Usage: decoding_file_server.py DIR — prints "PORT <n>"."""
import functools
import http.server
import sys

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.func.log_message = lambda *args: None
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
