#!/usr/bin/env python3
"""The seed's hazard, reproduced: WebSockets and keep-alive HTTP through ONE proxy prefix.

Holds IDLE idle WebSockets open through the proxy, while CLIENTS concurrent clients each, for
SECONDS (or ROUNDS rounds), open a WebSocket and verify an echo, and fetch files over one
keep-alive HTTP connection verifying every body by sha256. With --misbehaving, requests for
/tts-ws/extra-bytes (expected body "hello") are interleaved: a proxy that reused that backend
connection would hand its stray bytes to the next request.

Prints one JSON line: {"wrong_bodies", "unexpected_404", "http_ok", "ws_ok", "errors", ...}.
Usage: hazard_driver.py PORT FILES_DIR [--idle N] [--clients N] [--seconds S] [--misbehaving]
"""
import argparse
import asyncio
import hashlib
import json
import os
import re
import time

import websockets


async def http_client(port, files, stats, deadline, misbehaving, index):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = index
    while time.time() < deadline:
        n += 1
        if misbehaving and n % 3 == 0:
            path, expected = "/tts-ws/extra-bytes", hashlib.sha256(b"hello").hexdigest()
        else:
            name, expected = files[n % len(files)]
            path = f"/tts-ws/tts/wav/{name}"
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head.split()[1])
            match = re.search(rb"content-length:\s*(\d+)", head, re.I)
            body = await asyncio.wait_for(reader.readexactly(int(match.group(1))), 10) if match else b""
            if status == 404:
                stats["unexpected_404"] += 1
            elif status != 200 or hashlib.sha256(body).hexdigest() != expected:
                stats["wrong_bodies"] += 1
                stats.setdefault("samples", []).append({"path": path, "status": status, "body": body[:40].decode("latin-1")})
            else:
                stats["http_ok"] += 1
            if re.search(rb"connection:\s*close", head, re.I):
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except Exception as error:  # noqa: BLE001
            stats["errors"] += 1
            stats.setdefault("error_samples", []).append(repr(error)[:120])
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()


async def ws_client(port, stats, deadline, index):
    n = 0
    while time.time() < deadline:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/tts-ws/tts", open_timeout=10) as ws:
                for _ in range(5):
                    n += 1
                    message = f"client {index} message {n}"
                    await ws.send(message)
                    reply = await asyncio.wait_for(ws.recv(), 10)
                    if reply != message:
                        stats["wrong_bodies"] += 1
                    else:
                        stats["ws_ok"] += 1
        except Exception as error:  # noqa: BLE001
            stats["errors"] += 1
            stats.setdefault("error_samples", []).append(repr(error)[:120])


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("files_dir")
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--misbehaving", action="store_true")
    args = parser.parse_args()
    files = []
    for name in sorted(os.listdir(os.path.join(args.files_dir, "wav"))):
        data = open(os.path.join(args.files_dir, "wav", name), "rb").read()
        files.append((name, hashlib.sha256(data).hexdigest()))
    stats = {"wrong_bodies": 0, "unexpected_404": 0, "http_ok": 0, "ws_ok": 0, "errors": 0}
    idle = []
    for _ in range(args.idle):
        idle.append(await websockets.connect(f"ws://127.0.0.1:{args.port}/tts-ws/tts", open_timeout=10))
    stats["idle_open"] = len(idle)
    deadline = time.time() + args.seconds
    await asyncio.gather(
        *[http_client(args.port, files, stats, deadline, args.misbehaving, i) for i in range(args.clients)],
        *[ws_client(args.port, stats, deadline, i) for i in range(max(1, args.clients // 2))],
    )
    # The idle WebSockets must still work after all that.
    for i, ws in enumerate(idle[:20]):
        await ws.send(f"idle {i}")
        if await asyncio.wait_for(ws.recv(), 10) != f"idle {i}":
            stats["wrong_bodies"] += 1
    for ws in idle:
        await ws.close()
    stats.pop("error_samples", None) if not stats["errors"] else None
    print(json.dumps(stats))


asyncio.run(main())
