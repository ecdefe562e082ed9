#!/usr/bin/env python3
"""Opens COUNT WebSockets through Ferry to wss://localhost:PORT/PATH (20 at a time), prints
"open N" once N are held, then waits for its standard input to close (at most 60 s) and closes
them. Nothing here decides pass or fail.

usage: hold_websockets.py PORT PATH COUNT
"""
import asyncio
import ssl
import sys

import websockets


async def main(port: int, path: str, count: int) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(20)

    async def one():
        async with gate:
            try:
                return await websockets.connect(f"wss://localhost:{port}{path}", ssl=context, open_timeout=10)
            except Exception as error:  # counted, not raised: the test compares the count
                print(f"failed {error!r}", file=sys.stderr)
                return None

    sockets = [s for s in await asyncio.gather(*(one() for _ in range(count))) if s is not None]
    print(f"open {len(sockets)}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 60)
    except asyncio.TimeoutError:
        pass
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    print("closed", flush=True)


asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
