"""Opens more TLS connections than a descriptor-limited Ferry worker may hold, and reports what
happened to them: how many completed their handshake (were accepted), whether an accepted one is
still served while the worker is full, and how many of the waiting ones are accepted once some
close. Nothing here decides pass or fail; the Swift test does.

usage: connection_limit.py PORT COUNT CLOSE
"""
import json
import select
import socket
import ssl
import sys
import time

port, count, to_close = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE

pending = []
for _ in range(count):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    raw.setblocking(False)
    pending.append(context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False))


def drive(pending, seconds):
    """Advances the handshakes for `seconds` (bounded); returns (completed, failed)."""
    done, failed = [], []
    deadline = time.time() + seconds
    while pending and time.time() < deadline:
        for conn in list(pending):
            try:
                conn.do_handshake()
                done.append(conn)
                pending.remove(conn)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except (ssl.SSLError, OSError):
                failed.append(conn)
                pending.remove(conn)
        if pending:
            select.select(pending, [], [], 0.05)
    return done, failed


first, failed_first = drive(pending, 4)

# A connection accepted before the limit is still served while the worker is full.
served = ""
if first:
    probe = first[0]
    probe.setblocking(True)
    probe.settimeout(5)
    try:
        probe.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        served = probe.recv(64).decode("latin-1").split("\r\n")[0]
    except OSError as error:
        served = f"error: {error}"

for conn in first[1 : 1 + to_close]:
    conn.close()
second, failed_second = drive(pending, 4)

print(json.dumps({
    "first": len(first),
    "failed_first": len(failed_first),
    "served_while_full": served,
    "second": len(second),
    "failed_second": len(failed_second),
    "still_waiting": len(pending),
}))
