#!/usr/bin/env python3
"""Holds one WebSocket (echo every 0.2 s) and one keep-alive HTTPS connection (GET every 0.2 s)
to NAME through Ferry for SECONDS seconds, both verified against CAFILE, and opens a new TLS
connection every 0.5 s to see which certificate new handshakes get. Prints one JSON line:
echoes, gets, errors (anything that failed on the held connections: a drop is an error, there
is no reconnect), the serial the held connections got, and the serials new handshakes saw.
Bounded in time; nothing here decides pass or fail.

Usage: acme_renewal_client.py PORT NAME CAFILE SECONDS
"""
import asyncio
import http.client
import json
import socket
import ssl
import sys
import time

import websockets

port, name, cafile, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
context = ssl.create_default_context(cafile=cafile)


def tls_socket():
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname=name)


def serial_of(ssl_socket):
    return ssl_socket.getpeercert()["serialNumber"]


async def main():
    result = {"echoes": 0, "gets": 0, "errors": [], "held_serials": [], "new_serials": []}
    keep_alive = http.client.HTTPSConnection(name, port, timeout=10)
    keep_alive.sock = tls_socket()  # the name is not in DNS: connect by address, verify by name
    result["held_serials"].append(serial_of(keep_alive.sock))
    async with websockets.connect(
        f"wss://{name}:{port}/ws", ssl=context, host="127.0.0.1", port=port, open_timeout=10
    ) as ws:
        result["held_serials"].append(serial_of(ws.transport.get_extra_info("ssl_object")))
        end = time.monotonic() + seconds
        next_probe = 0.0
        while time.monotonic() < end:
            try:
                await ws.send(f"echo {result['echoes']}")
                if await asyncio.wait_for(ws.recv(), 5) != f"echo {result['echoes']}":
                    result["errors"].append("wrong echo")
                result["echoes"] += 1
            except Exception as error:  # the WebSocket dropped: no retry
                result["errors"].append(f"websocket: {error!r}")
                break
            try:
                keep_alive.request("GET", "/")
                response = keep_alive.getresponse()
                body = response.read()
                if response.status != 200 or body != b"served\n":
                    result["errors"].append(f"GET {response.status}")
                result["gets"] += 1
            except Exception as error:
                result["errors"].append(f"keep-alive: {error!r}")
                break
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + 0.5
                try:
                    probe = tls_socket()
                    serial = serial_of(probe)
                    probe.close()
                    if serial not in result["new_serials"]:
                        result["new_serials"].append(serial)
                except Exception as error:
                    result["errors"].append(f"new handshake: {error!r}")
            await asyncio.sleep(0.2)
    print(json.dumps(result), flush=True)


asyncio.run(main())
