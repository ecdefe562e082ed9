#!/usr/bin/env python3
"""A WebSocket echo backend: every message comes back as it was sent.

Usage: echo_ws_backend.py PORT
"""
import asyncio
import sys

import websockets


async def echo(socket, path=None):
    async for message in socket:
        await socket.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, max_size=2**20):
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1])))
