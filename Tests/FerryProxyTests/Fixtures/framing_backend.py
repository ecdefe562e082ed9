#!/usr/bin/env python3
"""A backend that answers with each kind of response framing, byte for byte, by path:
/length (Content-Length), /chunked (three chunks), /eof (no length, ends by closing),
/304 (with a Content-Length that must not reach the client), /204. Keep-alive except /eof.
/slow answers after half a second. /partial sends its head and half its body, the rest half a second later (/partial?until=FILE: once FILE exists), then closes. /request (any query) answers with the exact bytes of the request it got (head and body, the body read as its
Content-Length or its chunks say). /early answers at once, reading no body, and keeps the connection (a method it does not know,
such as body bytes glued to the next request, gets a 400 and the connection closed).
Listens on 127.0.0.1, or on the address given as the first argument (::1 for IPv6).
Prints "listening PORT" once it accepts."""
import os
import socket
import sys
import threading
import time

RESPONSES = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kind: length\r\n\r\nhello",
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n"
    b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n",
    "/eof": b"HTTP/1.1 200 OK\r\nX-Kind: eof\r\nConnection: close\r\n\r\nstreamed until close",
    "/304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
    "/204": b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n",
}


def read_body(conn, head, data):
    """The raw body bytes the head announces (the chunks with their framing), and what follows."""
    lowered = head.lower()
    if b"\r\ntransfer-encoding: chunked" in lowered:
        raw = b""
        while True:
            while b"\r\n" not in data:
                data += conn.recv(65536)
            line, data = data.split(b"\r\n", 1)
            size = int(line, 16)
            while len(data) < size + 2:
                data += conn.recv(65536)
            raw += line + b"\r\n" + data[:size + 2]
            data = data[size + 2:]
            if size == 0:
                return raw, data
    for line in lowered.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            while len(data) < length:
                data += conn.recv(65536)
            return data[:length], data[length:]
    return b"", data


def serve(conn):
    data = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, data = data.split(b"\r\n\r\n", 1)
            method, path = head.split(b" ")[:2]
            if method not in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"):
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\ngarbled")
                return
            if path == b"/early":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
                continue
            if path.split(b"?")[0] == b"/partial":
                # Half the body now, the rest 0.5 s later (or ?seconds=N); the request body is not read.
                query = path.partition(b"?")[2]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                if query.startswith(b"until="):
                    # The rest once this file exists (at most 20 s).
                    release = query.split(b"=", 1)[1].decode()
                    deadline = time.monotonic() + 20
                    while not os.path.exists(release) and time.monotonic() < deadline:
                        time.sleep(0.01)
                else:
                    time.sleep(0.5)
                conn.sendall(b"world")
                return
            if path == b"/slow":
                time.sleep(0.5)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
                continue
            if path.split(b"?")[0] == b"/request":
                body, data = read_body(conn, head, data)
                echoed = head + b"\r\n\r\n" + body
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(echoed) + echoed)
                continue
            response = RESPONSES.get(path.decode(), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            if method == b"HEAD":
                response = response.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            conn.sendall(response)
            if path == b"/eof" and method != b"HEAD":
                return


host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((host, 0))
listener.listen(64)
print("listening", listener.getsockname()[1], flush=True)
while True:
    connection, _ = listener.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
