#!/usr/bin/env python3
"""Opens a WebSocket through Ferry, prints "open" once it works, then waits (bounded) for Ferry
to close it and prints one JSON line: the close code (1001 from a draining worker; 1006 when the
connection just died) and how many echoes worked.

Usage: hold_websocket.py PORT CAFILE SECONDS
"""
import asyncio
import json
import ssl
import sys

import websockets


async def main(port: int, cafile: str, seconds: float) -> None:
    ctx = ssl.create_default_context(cafile=cafile)
    result = {"close_code": None, "echoes": 0}
    async with websockets.connect(f"wss://localhost:{port}/tts-ws/tts", ssl=ctx, open_timeout=10) as ws:
        await ws.send(json.dumps({"id": "hold", "text": "hold", "format": "wav"}))
        await asyncio.wait_for(ws.recv(), 10)
        result["echoes"] += 1
        print("open", flush=True)
        try:
            await asyncio.wait_for(ws.wait_closed(), seconds)
        except asyncio.TimeoutError:
            pass
        result["close_code"] = ws.close_code
    print(json.dumps(result), flush=True)


asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
