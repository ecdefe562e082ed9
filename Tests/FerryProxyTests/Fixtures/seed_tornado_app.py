#!/usr/bin/env python3
"""The seed's backend: one Tornado port serving /tts (WebSocketHandler, echo here) and
/tts/wav/…, /tts/mp3/… (StaticFileHandler) from one directory.

Usage: seed_tornado_app.py FILES_DIR [PORT]  — prints "PORT <n>" once listening on 127.0.0.1
(on PORT when given, else a free one). /whoami answers with the port, to tell instances apart.
"""
import asyncio
import sys

import tornado.web
import tornado.websocket


class WhoAmI(tornado.web.RequestHandler):
    def get(self):
        self.write(str(self.request.connection.stream.socket.getsockname()[1]))


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


async def main():
    root = sys.argv[1]
    app = tornado.web.Application([
        (r"/tts", Echo),
        (r"/whoami", WhoAmI),
        (r"/tts/wav/(.*)", tornado.web.StaticFileHandler, {"path": f"{root}/wav"}),
        (r"/tts/mp3/(.*)", tornado.web.StaticFileHandler, {"path": f"{root}/mp3"}),
    ])
    server = app.listen(int(sys.argv[2]) if len(sys.argv) > 2 else 0, address="127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
