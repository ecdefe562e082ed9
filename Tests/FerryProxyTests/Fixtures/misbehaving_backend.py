#!/usr/bin/env python3
"""A backend that breaks HTTP in the ways the pool must survive, chosen by path:

  /ok/<n>            200, keep-alive, body "ok <n>" (the control case)
  /close-mid-body    promises 100 bytes, sends 10, closes
  /connection-close  200 with Connection: close
  /extra-bytes       a complete response followed by stray bytes on the same connection
  /upgrade-200       answers a WebSocket upgrade with a plain 200
  /never             reads the request and never answers
  /wav/<name>        the file <name> from FILES_DIR, keep-alive (for the hazard test)
  /tts               a WebSocket echo (minimal RFC 6455, text and binary, small frames)
  /tts-greet         the same, sending a text frame "welcome" in the same write as its 101
  /tts-bye           a WebSocket that sends a text frame "bye" 0.3 s after its 101 and closes at once
  /flaky             answers the first request of a connection; closes without answering any later one

Usage: misbehaving_backend.py FILES_DIR [--unix PATH] — prints "PORT <n>" (or "PORT 0" on a Unix socket).
"""
import asyncio
import base64
import hashlib
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."


async def read_head(reader):
    data = await reader.readuntil(b"\r\n\r\n")
    lines = data.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return method, path, headers


def response(status, body, extra=""):
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def switching_protocols(headers):
    key = headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


async def websocket(reader, writer, headers, greeting=b""):
    writer.write(switching_protocols(headers) + greeting)
    await writer.drain()
    while True:
        head = await reader.readexactly(2)
        opcode = head[0] & 0x0F
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
        payload = bytearray(await reader.readexactly(length))
        for i in range(length):
            payload[i] ^= mask[i % 4]
        if opcode == 8:
            writer.write(b"\x88" + bytes([len(payload)]) + bytes(payload))
            await writer.drain()
            return
        if opcode == 9:
            opcode = 10
        elif opcode == 10:
            continue
        n = len(payload)
        prefix = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else b"\x7e" + n.to_bytes(2, "big"))
        writer.write(prefix + bytes(payload))
        await writer.drain()


async def websocket_bye(writer, headers):
    writer.write(switching_protocols(headers))
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.write(b"\x81\x03bye")
    writer.close()


async def handle(reader, writer):
    served = 0
    try:
        while True:
            method, path, headers = await read_head(reader)
            served += 1
            if path.startswith("/flaky") and served > 1:
                writer.close()
                return
            if headers.get("upgrade", "").lower() == "websocket":
                if path.startswith("/upgrade-200"):
                    writer.write(response("200 OK", b"not a websocket"))
                    await writer.drain()
                    continue
                if path.startswith("/tts-bye"):
                    await websocket_bye(writer, headers)
                    return
                greeting = b"\x81\x07welcome" if "/tts-greet" in path else b""
                await websocket(reader, writer, headers, greeting)
                return
            if path.startswith("/flaky"):
                writer.write(response("200 OK", b"flaky ok"))
            elif path.startswith("/ok/"):
                writer.write(response("200 OK", f"ok {path[4:]}".encode()))
            elif path == "/close-mid-body":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                await writer.drain()
                writer.close()
                return
            elif path == "/connection-close":
                writer.write(response("200 OK", b"closing", "Connection: close\r\n"))
                await writer.drain()
                writer.close()
                return
            elif path == "/extra-bytes":
                writer.write(response("200 OK", b"hello") + b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nGARBAGE")
            elif path == "/never":
                await asyncio.sleep(3600)
            elif path.startswith("/wav/") or path.startswith("/tts/wav/"):
                name = os.path.basename(path)
                try:
                    body = open(os.path.join(ROOT, "wav", name), "rb").read()
                    writer.write(response("200 OK", body))
                except OSError:
                    writer.write(response("404 Not Found", b"missing"))
            else:
                writer.write(response("404 Not Found", b"unknown"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    if "--unix" in sys.argv:
        path = sys.argv[sys.argv.index("--unix") + 1]
        server = await asyncio.start_unix_server(handle, path)
        print("PORT 0", flush=True)
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
