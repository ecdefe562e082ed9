#!/usr/bin/env python3
"""The seed's traffic pattern through Ferry over TLS: a WebSocket request to
/tts-ws/tts, then an HTTPS fetch of the announced file through the same
prefix, verified by sha256. Prints one JSON line; exit 0 when verified.

Usage: tts_roundtrip.py PORT CAFILE [COUNT]
"""
import asyncio
import hashlib
import http.client
import json
import ssl
import sys

import websockets


async def main(port: int, cafile: str, count: int) -> int:
    ctx = ssl.create_default_context(cafile=cafile)
    results = []
    async with websockets.connect(f"wss://localhost:{port}/tts-ws/tts", ssl=ctx, open_timeout=10) as ws:
        for i in range(count):
            await ws.send(json.dumps({"id": f"r{i}", "text": f"hello ferry number {i}", "format": "wav"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if "error" in reply:
                print(json.dumps({"ok": False, "reply": reply}))
                return 1
            results.append(reply)
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    verified = 0
    for reply in results:
        conn.request("GET", "/tts-ws/" + reply["url"])
        response = conn.getresponse()
        body = response.read()
        digest = hashlib.sha256(body).hexdigest()
        if response.status != 200 or digest != reply["sha256"] or len(body) != reply["bytes"]:
            print(json.dumps({"ok": False, "status": response.status, "url": reply["url"], "sha256": digest,
                              "expected": reply["sha256"], "bytes": len(body)}))
            return 1
        verified += 1
    print(json.dumps({"ok": True, "verified": verified, "first": results[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)))
