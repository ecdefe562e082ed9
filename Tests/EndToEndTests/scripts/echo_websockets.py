#!/usr/bin/env python3
"""COUNT WebSockets through Ferry (wss://localhost:PORT/PATH), each sending a message every 200 ms
and waiting for its echo, until STOP_FILE exists (at most MAX_SECONDS). Prints "open N" once all
are connected, then one JSON line at the end: opened, still_open, echoes, failures (a missing or
wrong echo), closed (sockets that closed before the end, with their codes). Nothing here decides.

Usage: echo_websockets.py PORT PATH COUNT STOP_FILE MAX_SECONDS
"""
import asyncio
import json
import os
import ssl
import sys
import time

import websockets

port, path, count, stop_file, max_seconds = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4],
                                             float(sys.argv[5]))
result = {"opened": 0, "still_open": 0, "echoes": 0, "failures": 0, "closed": []}


async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(20)

    async def connect():
        async with gate:
            try:
                return await websockets.connect(f"wss://localhost:{port}{path}", ssl=context, open_timeout=15)
            except Exception as error:
                print(f"connect failed: {error!r}", file=sys.stderr)
                return None

    sockets = [s for s in await asyncio.gather(*(connect() for _ in range(count))) if s is not None]
    result["opened"] = len(sockets)
    print(f"open {len(sockets)}", flush=True)
    deadline = time.monotonic() + max_seconds

    async def run(index, socket):
        sequence = 0
        try:
            while time.monotonic() < deadline and not os.path.exists(stop_file):
                sequence += 1
                message = f"{index}:{sequence}"
                await socket.send(message)
                answer = await asyncio.wait_for(socket.recv(), 10)
                if answer == message:
                    result["echoes"] += 1
                else:
                    result["failures"] += 1
                await asyncio.sleep(0.2)
            result["still_open"] += 1
        except Exception as error:
            result["closed"].append(getattr(socket, "close_code", None) or repr(error)[:80])
        finally:
            await socket.close()

    await asyncio.gather(*(run(index, socket) for index, socket in enumerate(sockets)))


asyncio.run(main())
print(json.dumps(result), flush=True)
