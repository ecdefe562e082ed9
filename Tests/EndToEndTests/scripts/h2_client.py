#!/usr/bin/env python3
"""An HTTP/2 client (the `h2` library over TLS, ALPN h2) for Ferry's HTTP/2 tests.

  h2_client.py PORT streams PATH...   every PATH as its own stream on one connection, all sent
                                      before any response is read; each /bytes/N or /chunked/N
                                      body is checked against the backend's pattern. Prints
                                      "ok COUNT" or "bad PATH: reason".
  h2_client.py PORT slow PATH STALL   reads 1 MiB of PATH, then for STALL seconds reads its socket
                                      but sends no WINDOW_UPDATE (prints "stalled", then "stalled
                                      at BYTES"); then opens the windows, reads 32 MiB more, prints
                                      "resumed BYTES", resets the stream and exits.
  h2_client.py PORT ws PATH COUNT      a WebSocket over HTTP/2 (RFC 8441 extended CONNECT) to PATH:
                                      COUNT text messages, each echo checked, then a close
                                      handshake and END_STREAM. Prints "ok COUNT" (a failure
                                      prints "bad ..." and exits 1).
  h2_client.py PORT tts COUNT         the seed's pattern on one HTTP/2 connection: COUNT speech
                                      requests on a WebSocket stream to /tts-ws/tts, then each
                                      announced file fetched on its own stream, sha256 checked.
  h2_client.py PORT status PATH PROTOCOL VERSION   the status of an extended CONNECT ("-": no
                                      :protocol / no sec-websocket-version)
  h2_client.py PORT hold PATH         a WebSocket over HTTP/2 held until the server closes it:
                                      prints "open", "close CODE", then how the stream ended
Bounded: every read times out after 20 s.
"""
import hashlib
import json
import os
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events

PATTERN = bytes(range(256)) * 256


def expected(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def connect(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock = tls_context(["h2"]).wrap_socket(raw, server_hostname="localhost")
    if sock.selected_alpn_protocol() != "h2":
        sys.exit("bad ALPN: %r" % sock.selected_alpn_protocol())
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def headers(path, port):
    return [(":method", "GET"), (":scheme", "https"), (":authority", "localhost:%d" % port), (":path", path)]


def streams(port, paths):
    sock, conn = connect(port)
    bodies, status, done = {}, {}, set()
    ids = {}
    for path in paths:
        stream = conn.get_next_available_stream_id()
        ids[stream] = path
        bodies[stream] = bytearray()
        conn.send_headers(stream, headers(path, port), end_stream=True)
    sock.sendall(conn.data_to_send())
    while len(done) < len(paths):
        data = sock.recv(1 << 20)
        if not data:
            sys.exit("connection closed with %d of %d streams done" % (len(done), len(paths)))
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status[event.stream_id] = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                done.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                sys.exit("bad %s: reset %s" % (ids[event.stream_id], event.error_code))
        sock.sendall(conn.data_to_send())
    for stream, path in ids.items():
        if status.get(stream) != "200":
            sys.exit("bad %s: status %s" % (path, status.get(stream)))
        kind, _, size = path.rpartition("/")
        if kind.endswith("/bytes") or kind.endswith("/chunked"):
            if bytes(bodies[stream]) != expected(int(size)):
                sys.exit("bad %s: %d bytes, not the pattern" % (path, len(bodies[stream])))
    print("ok %d" % len(paths), flush=True)


def slow(port, path, stall):
    sock, conn = connect(port)
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers(path, port), end_stream=True)
    sock.sendall(conn.data_to_send())
    received = 0

    def read_until(limit, acknowledge):
        nonlocal received
        while received < limit:
            data = sock.recv(1 << 20)
            if not data:
                sys.exit("closed after %d bytes" % received)
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    received += len(event.data)
                    if acknowledge:
                        conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamReset):
                    sys.exit("reset after %d bytes" % received)
            sock.sendall(conn.data_to_send())

    read_until(1 << 20, acknowledge=True)
    # From now nothing is acknowledged: once the window is used up, Ferry may send nothing more,
    # though this client keeps reading its socket (no TCP backpressure helps Ferry here).
    print("stalled", flush=True)
    sock.settimeout(0.2)
    ends = time.monotonic() + stall
    while time.monotonic() < ends:
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not data:
            sys.exit("closed while stalled")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                received += len(event.data)
    sock.settimeout(20)
    print("stalled at %d" % received, flush=True)
    # Open the windows again and read on.
    conn.increment_flow_control_window(1 << 24)
    conn.increment_flow_control_window(1 << 24, stream)
    sock.sendall(conn.data_to_send())
    read_until(received + (32 << 20), acknowledge=True)
    print("resumed %d" % received, flush=True)
    conn.reset_stream(stream)
    sock.sendall(conn.data_to_send())
    sock.close()


def ws_frame(opcode, payload):
    """A client's frame: FIN, masked (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(buffer):
    """One server frame off the front of buffer: (opcode, payload, rest) or None."""
    if len(buffer) < 2:
        return None
    length, offset = buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, offset = int.from_bytes(buffer[2:4], "big"), 4
    if len(buffer) < offset + length:
        return None
    return buffer[0] & 0x0F, bytes(buffer[offset : offset + length]), buffer[offset + length :]


class H2Client:
    def __init__(self, port):
        self.port = port
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock = tls_context(["h2"]).wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.streams = {}
        self.goaway = False
        while not self.conn.remote_settings.enable_connect_protocol:
            self.pump()

    def pump(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("connection closed")
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = True
                if event.error_code == 0:
                    # A graceful GOAWAY (RFC 9113 §6.8): streams up to its last stream id go on.
                    # The h2 library takes every GOAWAY as the end of the connection and refuses
                    # their frames; put it back so that this client behaves as browsers do.
                    self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
            stream = self.streams.get(getattr(event, "stream_id", None))
            if stream is None:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                stream["status"] = dict(event.headers).get(b":status", b"").decode()
            elif isinstance(event, h2.events.DataReceived):
                stream["body"].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream["ended"] = True
            elif isinstance(event, h2.events.StreamReset):
                stream["reset"] = event.error_code
        self.sock.sendall(self.conn.data_to_send())

    def open(self, headers, end_stream):
        stream_id = self.conn.get_next_available_stream_id()
        self.streams[stream_id] = {"status": None, "body": bytearray(), "ended": False, "reset": None}
        base = [(":scheme", "https"), (":authority", "localhost:%d" % self.port)]
        self.conn.send_headers(stream_id, headers[:1] + base + headers[1:], end_stream=end_stream)
        self.sock.sendall(self.conn.data_to_send())
        return stream_id

    def wait(self, condition):
        while not condition():
            self.pump()


def tls_context(alpn):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    return context


def ws_open(client, path):
    """An extended CONNECT for a WebSocket on PATH; exits unless answered 200."""
    stream = client.open(
        [(":method", "CONNECT"), (":protocol", "websocket"), (":path", path), ("sec-websocket-version", "13")],
        end_stream=False,
    )
    state = client.streams[stream]
    client.wait(lambda: state["status"] is not None or state["reset"] is not None)
    if state["status"] != "200":
        sys.exit("bad status %s (reset %s)" % (state["status"], state["reset"]))
    return stream, state


def ws_exchange(client, stream, state, opcode, payload):
    """Sends one frame and returns the next frame the server sends (opcode, payload)."""
    client.conn.send_data(stream, ws_frame(opcode, payload))
    client.sock.sendall(client.conn.data_to_send())
    client.wait(lambda: ws_parse(state["body"]) is not None or state["ended"] or state["reset"] is not None)
    frame = ws_parse(state["body"])
    if frame is None:
        sys.exit("bad: the stream ended (reset %s) before the server's frame" % state["reset"])
    state["body"] = bytearray(frame[2])
    return frame[0], frame[1]


def ws_close(client, stream, state):
    opcode, _ = ws_exchange(client, stream, state, 0x8, (1000).to_bytes(2, "big"))
    if opcode != 0x8:
        sys.exit("bad: expected a close frame, got opcode %d" % opcode)
    client.conn.end_stream(stream)
    client.sock.sendall(client.conn.data_to_send())
    client.wait(lambda: state["ended"] or state["reset"] is not None)


def ws(port, path, count):
    client = H2Client(port)
    stream, state = ws_open(client, path)
    for index in range(count):
        message = ("message %d " % index + "x" * (index % 300)).encode()
        opcode, payload = ws_exchange(client, stream, state, 0x1, message)
        if opcode != 0x1 or payload != message:
            sys.exit("bad echo %d: opcode %d, %r" % (index, opcode, payload[:40]))
    ws_close(client, stream, state)
    print("ok %d" % count, flush=True)


def tts(port, count):
    """The seed's pattern on one HTTP/2 connection: speech requests over a WebSocket stream, then
    each announced file fetched on streams of the same connection, checked by sha256."""
    client = H2Client(port)
    stream, state = ws_open(client, "/tts-ws/tts")
    replies = []
    for index in range(count):
        request = json.dumps({"id": "r%d" % index, "text": "hello ferry number %d" % index, "format": "wav"})
        opcode, payload = ws_exchange(client, stream, state, 0x1, request.encode())
        reply = json.loads(payload)
        if opcode != 0x1 or "error" in reply:
            sys.exit("bad reply %r" % payload[:200])
        replies.append(reply)
    for reply in replies:
        get = client.open([(":method", "GET"), (":path", "/tts-ws/" + reply["url"])], end_stream=True)
        got = client.streams[get]
        client.wait(lambda: got["ended"] or got["reset"] is not None)
        digest = hashlib.sha256(got["body"]).hexdigest()
        if got["status"] != "200" or digest != reply["sha256"] or len(got["body"]) != reply["bytes"]:
            sys.exit("bad file %s: status %s, %d bytes" % (reply["url"], got["status"], len(got["body"])))
    ws_close(client, stream, state)
    print("ok %d" % count, flush=True)


def connect_status(port, path, protocol, version):
    """The status an extended CONNECT gets (or the stream's reset code)."""
    client = H2Client(port)
    if protocol == "-":
        # A plain CONNECT (RFC 9113 §8.5): :method and :authority only.
        stream = client.conn.get_next_available_stream_id()
        client.streams[stream] = {"status": None, "body": bytearray(), "ended": False, "reset": None}
        client.conn.send_headers(stream, [(":method", "CONNECT"), (":authority", "localhost:%d" % port)])
        client.sock.sendall(client.conn.data_to_send())
    else:
        headers = [(":method", "CONNECT"), (":protocol", protocol), (":path", path)]
        if version != "-":
            headers.append(("sec-websocket-version", version))
        stream = client.open(headers, end_stream=False)
    state = client.streams[stream]
    client.wait(lambda: state["status"] is not None or state["reset"] is not None)
    print("status %s" % state["status"] if state["status"] else "reset %s" % state["reset"], flush=True)


def hold(port, path):
    """Holds a WebSocket over HTTP/2 open until the server closes it; prints the close code, the
    stream's end and whether a GOAWAY came."""
    client = H2Client(port)
    stream, state = ws_open(client, path)
    print("open", flush=True)
    client.sock.settimeout(30)
    client.wait(lambda: ws_parse(state["body"]) is not None or state["ended"] or state["reset"] is not None)
    frame = ws_parse(state["body"])
    if frame and frame[0] == 0x8:
        print("close %d" % int.from_bytes(frame[1][:2], "big"), flush=True)
        try:
            client.conn.send_data(stream, ws_frame(0x8, frame[1][:2]), end_stream=True)
            client.sock.sendall(client.conn.data_to_send())
            client.wait(lambda: state["ended"] or state["reset"] is not None)
        except Exception as error:  # noqa: BLE001
            print("after close: %r" % error, flush=True)
    print("ended %s reset %s goaway %s" % (state["ended"], state["reset"], client.goaway), flush=True)


if __name__ == "__main__":
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "streams":
        streams(port, sys.argv[3:])
    elif mode == "ws":
        ws(port, sys.argv[3], int(sys.argv[4]))
    elif mode == "status":
        connect_status(port, sys.argv[3], sys.argv[4], sys.argv[5])
    elif mode == "hold":
        hold(port, sys.argv[3])
    elif mode == "tts":
        tts(port, int(sys.argv[3]))
    elif mode == "slow":
        slow(port, sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit("unknown mode " + mode)
