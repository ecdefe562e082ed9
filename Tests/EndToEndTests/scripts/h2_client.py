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
Bounded: every read times out after 20 s.
"""
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
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock = context.wrap_socket(raw, server_hostname="localhost")
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


port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "streams":
    streams(port, sys.argv[3:])
elif mode == "slow":
    slow(port, sys.argv[3], float(sys.argv[4]))
else:
    sys.exit("unknown mode " + mode)
