#!/usr/bin/env python3
"""Opens COUNT TLS connections to Ferry, makes one keep-alive request on each (reading the whole
response), prints "open N" once all are held, then waits for its standard input to close (at most
60 s), closes every connection and prints "closed". Nothing here decides pass or fail.

usage: hold_connections.py PORT COUNT PATH
"""
import socket
import ssl
import sys

port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE


def fetch(conn):
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n")[0].decode("latin-1"))
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk


held = []
for _ in range(count):
    conn = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                               server_hostname="localhost")
    fetch(conn)
    held.append(conn)
print(f"open {len(held)}", flush=True)
sys.stdin.read()
for conn in held:
    conn.close()
print("closed", flush=True)
