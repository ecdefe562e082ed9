#!/usr/bin/env python3
"""A backend that answers with each kind of response framing, byte for byte, by path:
/length (Content-Length), /chunked (three chunks), /eof (no length, ends by closing),
/304 (with a Content-Length that must not reach the client), /204. Keep-alive except /eof.
Prints "listening PORT" once it accepts."""
import socket
import threading

RESPONSES = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kind: length\r\n\r\nhello",
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n"
    b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n",
    "/eof": b"HTTP/1.1 200 OK\r\nX-Kind: eof\r\nConnection: close\r\n\r\nstreamed until close",
    "/304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
    "/204": b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n",
}


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
            response = RESPONSES.get(path.decode(), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            if method == b"HEAD":
                response = response.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            conn.sendall(response)
            if path == b"/eof" and method != b"HEAD":
                return


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print("listening", listener.getsockname()[1], flush=True)
while True:
    connection, _ = listener.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
