#!/usr/bin/env python3
"""Continuous HTTPS requests (two keep-alive loops, three new-connection loops: accepts during
reloads are what exposed two generations accepting on one socket) plus one open WebSocket through
Ferry for SECONDS, while the test reloads the master. Prints JSON: requests, failures (with
samples), ws_messages, ws_close_code.

Usage: load_during_reloads.py PORT CAFILE SECONDS
"""
import asyncio
import http.client
import json
import ssl
import sys
import threading
import time

import websockets

port, cafile, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
stats = {"requests": 0, "failures": 0, "samples": [], "ws_messages": 0, "ws_close_code": None}
lock = threading.Lock()
deadline = time.time() + seconds


def http_loop(keep_alive):
    conn = None
    while time.time() < deadline:
        try:
            if conn is None or not keep_alive:
                conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            ok = response.status == 200 and b"<html" in body
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
            with lock:
                stats["requests"] += 1
                if not ok:
                    stats["failures"] += 1
                    stats["samples"].append(f"status {response.status}")
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            # A keep-alive connection closed by a draining worker between requests is normal HTTP:
            # clients retry idempotent requests on a new connection (RFC 9112 §9.3.1).
            conn = None
            try:
                c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
                c.request("GET", "/")
                r = c.getresponse()
                r.read()
                with lock:
                    stats["requests"] += 1
                    if r.status != 200:
                        stats["failures"] += 1
                        stats["samples"].append(f"retry status {r.status}")
            except Exception as retry_error:  # noqa: BLE001
                with lock:
                    stats["failures"] += 1
                    stats["samples"].append(f"{error!r} then {retry_error!r}")
        except Exception as error:  # noqa: BLE001
            conn = None
            with lock:
                stats["failures"] += 1
                stats["samples"].append(repr(error))


async def websocket_loop():
    try:
        async with websockets.connect(f"wss://localhost:{port}/tts-ws/tts", ssl=ctx) as ws:
            while time.time() < deadline + 5:
                await ws.send(json.dumps({"id": "x", "text": "reload", "format": "wav"}))
                await asyncio.wait_for(ws.recv(), 10)
                stats["ws_messages"] += 1
                await asyncio.sleep(0.2)
    except websockets.exceptions.ConnectionClosed as closed:
        stats["ws_close_code"] = closed.rcvd.code if closed.rcvd else None
    except Exception as error:  # noqa: BLE001
        stats["samples"].append(f"websocket: {error!r}")


threads = [threading.Thread(target=http_loop, args=(keep,)) for keep in (True, True, False, False, False)]
for t in threads:
    t.start()
asyncio.run(websocket_loop())
for t in threads:
    t.join()
stats["samples"] = stats["samples"][:10]
print(json.dumps(stats))
