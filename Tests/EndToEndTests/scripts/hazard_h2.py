#!/usr/bin/env python3
"""The seed's hazard with HTTP/2 clients among HTTP/1.1 ones, through Ferry over TLS: one proxy
prefix (/tts-ws) to one Tornado port that serves both WebSockets (/tts, echo) and files
(/tts/wav/...).

For SECONDS, at the same time:
  - H2 clients, each one HTTP/2 connection on which every round opens a WebSocket stream
    (RFC 8441 extended CONNECT, five echoes checked, close handshake) together with three file
    streams (bodies checked by sha256): WebSockets and downloads share the connection;
  - H1 clients, each one keep-alive HTTP/1.1 connection fetching files (sha256 checked);
  - WS clients, each opening wss:// WebSockets over HTTP/1.1 (five echoes each).
Prints one JSON line: {"wrong_bodies", "unexpected_404", "http_ok", "ws_ok", "h2_ws_ok",
"h2_http_ok", "errors", ...}. Every socket read times out after 20 s.

Usage: hazard_h2.py PORT FILES_DIR [--seconds S] [--h2 N] [--h1 N] [--ws N]
"""
import argparse
import asyncio
import hashlib
import json
import os
import re
import socket
import ssl
import sys
import threading
import time

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2_client import H2Client, tls_context, ws_frame, ws_parse  # noqa: E402

lock = threading.Lock()
stats = {"wrong_bodies": 0, "unexpected_404": 0, "http_ok": 0, "ws_ok": 0, "h2_ws_ok": 0, "h2_http_ok": 0, "errors": 0}


def count(key, sample=None):
    with lock:
        stats[key] += 1
        if sample is not None:
            stats.setdefault("samples", []).append(sample)


def h2_client(port, files, deadline, index):
    try:
        client = H2Client(port)
    except Exception as error:  # noqa: BLE001
        count("errors", repr(error)[:120])
        return
    n = index
    while time.time() < deadline:
        try:
            gets = []
            for _ in range(3):
                n += 1
                name, expected = files[n % len(files)]
                path = "/tts-ws/tts/wav/" + name
                gets.append((client.open([(":method", "GET"), (":path", path)], end_stream=True), path, expected))
            ws = client.open(
                [(":method", "CONNECT"), (":protocol", "websocket"), (":path", "/tts-ws/tts"),
                 ("sec-websocket-version", "13")],
                end_stream=False,
            )
            state = client.streams[ws]
            client.wait(lambda: state["status"] is not None or state["reset"] is not None)
            if state["status"] != "200":
                count("wrong_bodies", {"ws_status": state["status"], "reset": state["reset"]})
            else:
                for k in range(5):
                    message = ("h2 client %d message %d-%d" % (index, n, k)).encode()
                    client.conn.send_data(ws, ws_frame(0x1, message))
                    client.sock.sendall(client.conn.data_to_send())
                    client.wait(lambda: ws_parse(state["body"]) is not None)
                    opcode, payload, rest = ws_parse(state["body"])
                    state["body"] = bytearray(rest)
                    if opcode == 0x1 and payload == message:
                        count("h2_ws_ok")
                    else:
                        count("wrong_bodies", {"ws": payload[:40].decode("latin-1")})
                client.conn.send_data(ws, ws_frame(0x8, (1000).to_bytes(2, "big")), end_stream=True)
                client.sock.sendall(client.conn.data_to_send())
                client.wait(lambda: state["ended"] or state["reset"] is not None)
            for stream_id, path, expected in gets:
                got = client.streams[stream_id]
                client.wait(lambda: got["ended"] or got["reset"] is not None)
                if got["status"] == "404":
                    count("unexpected_404", {"path": path})
                elif got["status"] != "200" or hashlib.sha256(got["body"]).hexdigest() != expected:
                    count("wrong_bodies", {"path": path, "status": got["status"], "body": bytes(got["body"][:40]).decode("latin-1")})
                else:
                    count("h2_http_ok")
            for stream_id in [ws] + [g[0] for g in gets]:
                client.streams.pop(stream_id, None)
        except Exception as error:  # noqa: BLE001
            count("errors", repr(error)[:120])
            try:
                client = H2Client(port)
            except Exception:  # noqa: BLE001
                return


def h1_client(port, files, deadline, index):
    def connect():
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        return tls_context(["http/1.1"]).wrap_socket(raw, server_hostname="localhost")

    sock = connect()
    buffer = b""
    n = index
    while time.time() < deadline:
        n += 1
        name, expected = files[n % len(files)]
        path = "/tts-ws/tts/wav/" + name
        try:
            sock.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("closed")
                buffer += data
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            status = int(head.split()[1])
            length = int(re.search(rb"content-length:\s*(\d+)", head, re.I).group(1))
            while len(buffer) < length:
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("closed mid-body")
                buffer += data
            body, buffer = buffer[:length], buffer[length:]
            if status == 404:
                count("unexpected_404", {"path": path})
            elif status != 200 or hashlib.sha256(body).hexdigest() != expected:
                count("wrong_bodies", {"path": path, "status": status})
            else:
                count("http_ok")
        except Exception as error:  # noqa: BLE001
            count("errors", repr(error)[:120])
            sock, buffer = connect(), b""
    sock.close()


def ws_client(port, deadline, index):
    async def run():
        n = 0
        while time.time() < deadline:
            try:
                async with websockets.connect(
                    "wss://127.0.0.1:%d/tts-ws/tts" % port, ssl=tls_context(["http/1.1"]), open_timeout=10
                ) as ws:
                    for _ in range(5):
                        n += 1
                        message = "h1 client %d message %d" % (index, n)
                        await ws.send(message)
                        reply = await asyncio.wait_for(ws.recv(), 10)
                        count("ws_ok" if reply == message else "wrong_bodies")
            except Exception as error:  # noqa: BLE001
                count("errors", repr(error)[:120])

    asyncio.run(run())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("files_dir")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--h2", type=int, default=4)
    parser.add_argument("--h1", type=int, default=4)
    parser.add_argument("--ws", type=int, default=2)
    args = parser.parse_args()
    files = []
    for name in sorted(os.listdir(os.path.join(args.files_dir, "wav"))):
        with open(os.path.join(args.files_dir, "wav", name), "rb") as file:
            files.append((name, hashlib.sha256(file.read()).hexdigest()))
    deadline = time.time() + args.seconds
    threads = [threading.Thread(target=h2_client, args=(args.port, files, deadline, i)) for i in range(args.h2)]
    threads += [threading.Thread(target=h1_client, args=(args.port, files, deadline, i)) for i in range(args.h1)]
    threads += [threading.Thread(target=ws_client, args=(args.port, deadline, i)) for i in range(args.ws)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + 60)
    if not stats["errors"] and not stats["wrong_bodies"] and not stats["unexpected_404"]:
        stats.pop("samples", None)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
