#!/usr/bin/env python3
"""Worker replacement time: `kill -9` of the only worker, idle and while wrk keeps 16 keep-alive
HTTPS connections busy, then the time to a new worker process (with Ferry's standby worker, that
is the *next* standby: the slot is taken over by the existing one) and to the first new connection
accepted and answered (TLS handshake + a 1 KiB GET; under load it queues behind wrk's 16
reconnections and their handshakes). Ferry and nginx on the bench's setup (bench.Env: same
certificate, backends, one worker each, pinning); wrk loads only the target measured.

Usage: python3 Benchmarks/respawn.py [FERRY_BINARY] [KILLS] [--no-standby]
(default .build/release/ferry, 10 kills; --no-standby: Ferry with standby_worker = false)
Prints one line per kill and the medians; bounded: KILLS x 2 kills, each waited for at most 5 s.
"""
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def children(pid):
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def workers(master):
    return {c for c in children(master) if "worker" in cmdline(c)}


# Made once: building a default context loads the CA store (tens of ms), which would be counted.
CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CONTEXT.check_hostname = False
CONTEXT.verify_mode = ssl.CERT_NONE


def one_request(port, deadline):
    """A new connection, handshake and GET; True once answered with 200 before the deadline."""
    context = CONTEXT
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=max(0.05, deadline - time.monotonic())) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /tts-ws/tts/wav/1k.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                return tls.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def measure(master, port):
    """kill -9 the worker; (seconds to a new worker process, seconds to the first answered request)."""
    before = workers(master)
    victim = min(before)
    spawned = {}

    def watch():
        while time.monotonic() < start + 5:
            new = workers(master) - before
            if new:
                spawned["t"] = time.monotonic() - start
                return
            time.sleep(0.0005)

    start = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    watcher = threading.Thread(target=watch)
    watcher.start()
    answered = None
    while time.monotonic() < start + 5:
        # Each attempt is a connection made after the kill: it waits in the listen queue until a
        # worker accepts it, so the first success is the moment a worker accepts again.
        if one_request(port, start + 5):
            answered = time.monotonic() - start
            break
    watcher.join()
    return spawned.get("t"), answered


def main():
    arguments = [a for a in sys.argv[1:] if a != "--no-standby"]
    ferry = Path(arguments[0] if arguments else bench.ROOT / ".build/release/ferry").resolve()
    kills = int(arguments[1]) if len(arguments) > 1 else 10
    work = Path(tempfile.mkdtemp(prefix="ferry-respawn-"))
    work.chmod(0o755)  # nginx workers run unprivileged and must read the files
    env = bench.Env(work, ferry)
    if "--no-standby" in sys.argv:
        head = env.ferry_head
        env.ferry_head = lambda *a, **k: head(*a, **k).replace("[master]\n", "[master]\nstandby_worker = false\n", 1)
    env.prepare()
    env.start_backends()
    env.start_nginx()
    env.start_ferry()
    results = {}
    try:
        for loaded in (False, True):
            for target in ("ferry", "nginx"):
                # Load on the measured target only: both proxies share CPU 0.
                load = subprocess.Popen(
                    ["taskset", "-c", bench.LOAD_CPU, "wrk", "-t1", "-c16", f"-d{kills * 2 + 10}s",
                     f"https://127.0.0.1:{bench.PORTS[target]}/tts-ws/tts/wav/1k.bin"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if loaded else None
                key = f"{target} {'under load' if loaded else 'idle'}"
                results[key] = []
                try:
                    time.sleep(1)
                    for index in range(kills):
                        spawn, accept = measure(env.procs[target].pid, bench.PORTS[target])
                        results[key].append((spawn, accept))
                        print(f"{index} {key}: new worker process after {ms(spawn)} ms, "
                              f"first new connection answered after {ms(accept)} ms", flush=True)
                        time.sleep(1.5)
                finally:
                    if load:
                        load.kill()
                        load.wait()
    finally:
        env.stop_all()
    for key, rows in results.items():
        spawns = [s for s, _ in rows if s is not None]
        accepts = [a for _, a in rows if a is not None]
        if spawns and accepts:
            print(f"{key}: median new worker process {statistics.median(spawns) * 1000:.1f} ms, median first "
                  f"answered {statistics.median(accepts) * 1000:.1f} ms (max {max(accepts) * 1000:.1f}), "
                  f"{len(rows) - len(accepts)} of {len(rows)} never answered within 5 s")


def ms(seconds):
    return f"{seconds * 1000:.1f}" if seconds is not None else "-"

if __name__ == "__main__":
    main()
