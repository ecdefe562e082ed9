#!/usr/bin/env python3
"""Side-by-side benchmark: Ferry, nginx and HAProxy terminating TLS in front of
the seed's layout, on loopback, with identical setup for every target.

Layout (the seed's): /tts-ws/tts -> WebSocket echo backend (wsecho.c),
/tts-ws/tts/wav/* and /tts-ws/tts/mp3/* -> static backend (a separate nginx
serving files over plain HTTP). No target strips prefixes, so the same files
answer for all.

Fairness: one worker per proxy; proxy and backends pinned to CPU 0, load
generators to CPU 1 (taskset); warm-up, REPS repetitions, medians, targets
interleaved per repetition.

Writes docs/benchmarks.md (or the path given with --out). Run via `make bench`.
"""
import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "Benchmarks"
PORTS = {"ferry": 18445, "nginx": 18443, "haproxy": 18444}
STATIC_PORT = 18080
WS_PORT = 18081
PROXY_CPU = "0"
LOAD_CPU = "1"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def wait_port(port, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def pids_of(root_pid):
    """root_pid and all its descendants (children are listed per *thread* that spawned them)."""
    out = [root_pid]
    children = []
    try:
        for task in Path(f"/proc/{root_pid}/task").iterdir():
            try:
                children += (task / "children").read_text().split()
            except OSError:
                pass
    except OSError:
        return out
    for c in set(children):
        out += pids_of(int(c))
    return out


def rss_kib(root_pid):
    total = 0
    for pid in pids_of(root_pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Env:
    def __init__(self, work: Path, ferry_bin: Path, key_type: str = "ec"):
        self.key_type = key_type
        self.work = work
        self.ferry_bin = ferry_bin
        self.procs = {}
        self.cert = work / "cert.pem"
        self.key = work / "key.pem"
        self.bundle = work / "bundle.pem"
        self.www = work / "www"

    # --- setup -----------------------------------------------------------
    def prepare(self):
        self.work.chmod(0o755)  # nginx workers run unprivileged and must read the files
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if self.key_type == "ec" else ["-newkey", "rsa:2048"]
        sh(["openssl", "req", "-x509", *key, "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", "30", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        self.bundle.write_text(self.cert.read_text() + self.key.read_text())
        for fmt in ("wav", "mp3"):
            d = self.www / "tts-ws" / "tts" / fmt
            d.mkdir(parents=True, exist_ok=True)
            (d / "1k.bin").write_bytes(os.urandom(1024))
            (d / "64k.bin").write_bytes(os.urandom(65536))
        for tool in ("wsecho", "wsload", "tlsload"):
            libs = ["-lcrypto"] if tool == "wsecho" else ["-pthread", "-lssl", "-lcrypto"]
            sh(["cc", "-O2", "-o", str(self.work / tool), str(BENCH / f"{tool}.c")] + libs)

    def start(self, name, argv, port=None, cpu=PROXY_CPU):
        log = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs[name] = p
        if port:
            wait_port(port)
        return p

    def stop_all(self):
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def start_backends(self):
        self.start("wsecho", [str(self.work / "wsecho"), str(WS_PORT)], WS_PORT)
        conf = self.work / "static-nginx.conf"
        conf.write_text(f"""
daemon off; worker_processes 1; pid {self.work}/static-nginx.pid; error_log {self.work}/static-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{STATIC_PORT}; root {self.www}; }} }}
""")
        self.start("static", ["nginx", "-c", str(conf)], STATIC_PORT)

    # --- proxies ---------------------------------------------------------
    def start_nginx(self):
        conf = self.work / "nginx.conf"
        conf.write_text(f"""
daemon off; worker_processes 1; pid {self.work}/nginx.pid; error_log {self.work}/nginx-error.log;
worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
http {{
  access_log off;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream ws {{ server 127.0.0.1:{WS_PORT}; keepalive 256; }}
  upstream files {{ server 127.0.0.1:{STATIC_PORT}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']} ssl http2;
    ssl_certificate {self.cert}; ssl_certificate_key {self.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 100000;
    location /tts-ws/tts {{
      proxy_pass http://ws; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s;
    }}
    location /tts-ws/tts/wav/ {{ proxy_pass http://files; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location /tts-ws/tts/mp3/ {{ proxy_pass http://files; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
        return self.start("nginx", ["nginx", "-c", str(conf)], PORTS["nginx"])

    def start_haproxy(self):
        conf = self.work / "haproxy.cfg"
        conf.write_text(f"""
global
  nbthread 1
  maxconn 9900
  pidfile {self.work}/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 3600s
frontend https
  bind 127.0.0.1:{PORTS['haproxy']} ssl crt {self.bundle} alpn h2,http/1.1
  acl files path_beg /tts-ws/tts/wav/ /tts-ws/tts/mp3/
  use_backend files if files
  default_backend ws
backend ws
  server ws1 127.0.0.1:{WS_PORT}
backend files
  server f1 127.0.0.1:{STATIC_PORT}
""")
        return self.start("haproxy", ["haproxy", "-W", "-db", "-f", str(conf)], PORTS["haproxy"])

    def ferry_head(self, state, workers, port, backlog=511):
        """The [master] and [[listen]] part of a benchmark Ferry config (also used by scale.py)."""
        state.mkdir(exist_ok=True)
        return f"""
[master]
workers = {workers}
control_socket = "{state}/control.sock"
state_dir = "{state}"
access_log = "off"
log_level = "warning"

[[listen]]
name = "https"
address = "127.0.0.1:{port}"
backlog = {backlog}
[listen.tls]
certificate = "{self.cert}"
key = "{self.key}"
"""

    def start_ferry(self):
        conf = self.work / "ferry.toml"
        conf.write_text(self.ferry_head(self.work / "ferry-state", 1, PORTS['ferry']) + f"""
[[backend]]
name = "ws"
address = "127.0.0.1:{WS_PORT}"

[[backend]]
name = "files"
address = "127.0.0.1:{STATIC_PORT}"

[[route]]
path = "/tts-ws/tts"
backend = "ws"

[[route]]
path = "/tts-ws/tts/wav/"
backend = "files"

[[route]]
path = "/tts-ws/tts/mp3/"
backend = "files"

[pool]
max_idle_per_backend = 256

[limits]
max_connections_per_worker = 9900
""")
        return self.start("ferry", [str(self.ferry_bin), "serve", "--config", str(conf)], PORTS["ferry"])

    def restart(self, target):
        """A fresh process: memory figures must not depend on what the earlier figures left in the heap."""
        p = self.procs.pop(target)
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
        time.sleep(0.5)
        {"ferry": self.start_ferry, "nginx": self.start_nginx, "haproxy": self.start_haproxy}[target]()

    def reload(self, target):
        p = self.procs[target]
        if target == "haproxy":
            os.kill(p.pid, signal.SIGUSR2)
        else:
            os.kill(p.pid, signal.SIGHUP)


# --- load generators ------------------------------------------------------
WRK_RE = re.compile(r"Requests/sec:\s+([\d.]+)")


def parse_latency(text, pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(env, port, path, conns, seconds, extra=()):
    out = sh(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", *extra,
              f"https://127.0.0.1:{port}{path}"]).stdout
    rps = float(WRK_RE.search(out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"rps": rps, "p50": parse_latency(out, 50), "p99": parse_latency(out, 99), "errors": errs}


def h2load(env, port, path, conns, streams, seconds):
    """HTTP/2 requests/s with nghttp2's h2load: `conns` connections, `streams` concurrent streams
    each. h2load reports a mean time per request, not percentiles: p50 holds the mean, p99 the max."""
    out = sh(["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{conns}", f"-m{streams}", f"-D{seconds}",
              f"https://127.0.0.1:{port}{path}"]).stdout
    rate = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    timing = re.search(r"time for request:\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)", out)

    def ms(value, unit):
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = int(done.group(2)) + int(done.group(3)) + sum(int(codes.group(i)) for i in (2, 3, 4))
    return {"rps": rate, "p50": ms(timing.group(5), timing.group(6)), "p99": ms(timing.group(3), timing.group(4)),
            "errors": errors}


def wsload(env, port, conns, seconds):
    out = sh(["taskset", "-c", LOAD_CPU, str(env.work / "wsload"), "echo", "127.0.0.1", str(port), "/tts-ws/tts",
              str(conns), str(seconds), "64"]).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"rps": r["rate"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000, "errors": r["errors"]}


def tlsload(env, port, conns, seconds):
    out = sh(["taskset", "-c", LOAD_CPU, str(env.work / "tlsload"), "127.0.0.1", str(port), "/tts-ws/tts/wav/1k.bin",
              str(conns), str(seconds)]).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"rps": r["rate"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000,
            "errors": r["errors"] + r["reused"]}


def cpu_ticks(root_pid):
    """(utime, stime) of root_pid and its descendants, in clock ticks."""
    user = system = 0
    for pid in pids_of(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user, system


def with_cpu(env, target, seconds, run):
    """Runs a rate figure and adds the proxy's own CPU time per operation (µs), from /proc, in all
    and split into user and system time: a figure that holds even when the load generator, not
    the proxy, is the bottleneck."""
    root = env.procs[target].pid
    user0, sys0 = cpu_ticks(root)
    r = run()
    user1, sys1 = cpu_ticks(root)
    ops = r["rps"] * seconds
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    r["cpu_user_us"] = (user1 - user0) * tick_us / ops if ops else None
    r["cpu_sys_us"] = (sys1 - sys0) * tick_us / ops if ops else None
    r["cpu_us"] = r["cpu_user_us"] + r["cpu_sys_us"] if ops else None
    return r


def keepalive_memory(env, target, port, count):
    """RSS growth per idle keep-alive connection that has downloaded a 64 KiB file."""
    root = env.procs[target].pid
    time.sleep(1)
    before = rss_kib(root)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = []
    try:
        for _ in range(count):
            conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
            conn.sendall(b"GET /tts-ws/tts/wav/64k.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            while len(body) < length:
                body += conn.recv(65536)
            held.append(conn)
        time.sleep(1)
        after = rss_kib(root)
    finally:
        for conn in held:
            conn.close()
    return {"count": len(held), "kib_per_conn": (after - before) / max(len(held), 1)}


def idle_memory(env, target, port, count):
    root = env.procs[target].pid
    time.sleep(1)
    before = rss_kib(root)
    p = subprocess.Popen(["taskset", "-c", LOAD_CPU, str(env.work / "wsload"), "idle", "127.0.0.1", str(port),
                          "/tts-ws/tts", str(count), "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    opened = int(line.split()[1]) if line.startswith("READY") else 0
    time.sleep(2)
    after = rss_kib(root)
    p.stdin.close()
    p.wait(timeout=30)
    return {"opened": opened, "kib_per_ws": (after - before) / max(opened, 1), "before": before, "after": after}


async def _mixed(port, seconds, files):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import websockets  # noqa: PLC0415
    stats = {"ok": 0, "errors": 0}
    deadline = time.time() + seconds

    async def ws_client(i):
        while time.time() < deadline:
            try:
                async with websockets.connect(f"wss://127.0.0.1:{port}/tts-ws/tts", ssl=ctx) as ws:
                    for j in range(20):
                        msg = f"client {i} message {j}".encode()
                        await ws.send(msg)
                        if await ws.recv() != msg:
                            stats["errors"] += 1
                        else:
                            stats["ok"] += 1
            except Exception:
                stats["errors"] += 1

    async def http_client(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        n = 0
        while time.time() < deadline:
            path, digest = files[n % len(files)]
            n += 1
            writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split()[1])
                length = int(re.search(rb"content-length:\s*(\d+)", head, re.I).group(1))
                body = await reader.readexactly(length)
                if status == 200 and hashlib.sha256(body).hexdigest() == digest:
                    stats["ok"] += 1
                else:
                    stats["errors"] += 1
                if re.search(rb"connection:\s*close", head, re.I):
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            except Exception:
                stats["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        writer.close()

    await asyncio.gather(*[ws_client(i) for i in range(16)], *[http_client(i) for i in range(16)])
    return stats


def mixed(env, port, seconds):
    files = []
    for fmt in ("wav", "mp3"):
        for name in ("1k.bin", "64k.bin"):
            data = (env.www / "tts-ws" / "tts" / fmt / name).read_bytes()
            files.append((f"/tts-ws/tts/{fmt}/{name}", hashlib.sha256(data).hexdigest()))
    return asyncio.run(_mixed(port, seconds, files))


def reload_cost(env, target, port, reloads=10):
    p = subprocess.Popen(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c32", f"-d{reloads + 2}s", "--latency",
                          f"https://127.0.0.1:{port}/tts-ws/tts/wav/1k.bin"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    for _ in range(reloads):
        env.reload(target)
        time.sleep(1)
    out = p.communicate(timeout=60)[0]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    total = re.search(r"(\d+) requests in", out)
    return {"failed": errs, "total": int(total.group(1)) if total else 0, "p99": parse_latency(out, 99)}


# --- report ---------------------------------------------------------------
def fmt(v, digits=1):
    return "–" if v is None else f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", default=str(ROOT / ".build/release/ferry"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--targets", default="ferry,nginx,haproxy")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    ap.add_argument("--key-type", choices=["ec", "rsa"], default="ec")
    ap.add_argument("--figures", default="a,a64,b,c,h2,d,e,f,g,s", help="subset of figures to run")
    ap.add_argument("--scale-target", type=int, default=100_000, help="idle WebSockets for figure s")
    ap.add_argument("--scale-workers", type=int, default=12, help="Ferry workers for figure s")
    args = ap.parse_args()
    targets = args.targets.split(",")
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    work.chmod(0o755)  # nginx workers run unprivileged and must read the files
    env = Env(work, Path(args.ferry), args.key_type)
    wanted = set(args.figures.split(","))
    results = {t: {} for t in targets}
    results["_scale"] = None
    try:
        env.prepare()
        env.start_backends()
        starters = {"ferry": env.start_ferry, "nginx": env.start_nginx, "haproxy": env.start_haproxy}
        for t in targets:
            starters[t]()
        # warm-up
        for t in targets:
            wrk(env, PORTS[t], "/tts-ws/tts/wav/1k.bin", 64, 2)
        figures = {
            "a": lambda t: wrk(env, PORTS[t], "/tts-ws/tts/wav/1k.bin", 64, args.seconds),
            "a64": lambda t: wrk(env, PORTS[t], "/tts-ws/tts/wav/64k.bin", 64, args.seconds),
            "b": lambda t: tlsload(env, PORTS[t], 16, args.seconds),
            "c": lambda t: wsload(env, PORTS[t], 64, args.seconds),
            "h2": lambda t: h2load(env, PORTS[t], "/tts-ws/tts/wav/1k.bin", 16, 10, args.seconds),
        }
        figures = {k: v for k, v in figures.items() if k in wanted}
        for rep in range(args.reps):
            for fig, run in figures.items():
                order = targets[rep % len(targets):] + targets[:rep % len(targets)]
                for t in order:
                    r = with_cpu(env, t, args.seconds, lambda: run(t))
                    results[t].setdefault(fig, []).append(r)
                    print(f"rep {rep} {fig} {t}: {r}", flush=True)
        for t in targets:
            if "d" in wanted:
                env.restart(t)
                results[t]["d"] = idle_memory(env, t, PORTS[t], 2000)
                print(f"d {t}: {results[t]['d']}", flush=True)
            if "g" in wanted:
                env.restart(t)
                results[t]["g"] = keepalive_memory(env, t, PORTS[t], 500)
                print(f"g {t}: {results[t]['g']}", flush=True)
            if "e" in wanted:
                results[t]["e"] = mixed(env, PORTS[t], args.seconds)
                print(f"e {t}: {results[t]['e']}", flush=True)
            if "f" in wanted:
                results[t]["f"] = reload_cost(env, t, PORTS[t])
                print(f"f {t}: {results[t]['f']}", flush=True)
    finally:
        env.stop_all()
    if "s" in wanted and "ferry" in targets:
        # After the side-by-side figures: it needs the whole machine (and the same tools and certificate).
        import scale
        results["_scale"] = scale.run(args.ferry, args.scale_target, args.scale_workers, args.seconds, work=work)
        print(f"s: {results['_scale']}", flush=True)
    write_report(args, targets, results)
    shutil.rmtree(work, ignore_errors=True)


def median(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def write_report(args, targets, results):
    peers = [t for t in targets if t != "ferry"]
    lines = ["# Benchmarks", "",
             f"Generated by `make bench` (`Benchmarks/bench.py`) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             f"Machine: {os.cpu_count()} cores, `{os.uname().release}`; {args.reps} repetitions × {args.seconds}s,",
             "medians; targets interleaved; proxies and backends pinned to CPU 0, load generators to CPU 1;",
             "one worker per proxy; same ECDSA P-256 certificate; backends: wsecho.c (WebSocket echo) and a",
             "separate nginx serving files over plain HTTP. Ratio = Ferry ÷ best peer (higher is better for rates).",
             "\"proxy CPU µs/op\" is the proxy's own CPU time (all its processes, from /proc) per request or",
             "message: it holds when the load generator, not the proxy, is the bottleneck (figure b).",
             ""]
    titles = {"a": "(a) HTTPS keep-alive GET 1 KiB, 64 connections (wrk)",
              "a64": "(a64) HTTPS keep-alive GET 64 KiB, 64 connections (wrk)",
              "b": "(b) New connection + full TLS handshake per request, 16 connections (tlsload: no tickets, no session cache)",
              "c": "(c) WebSocket echo, 64 connections, 64-byte messages, depth 1 (wsload)",
              "h2": "(h2) HTTP/2 GET 1 KiB, 16 connections × 10 concurrent streams (h2load; p50 = mean, p99 = max)"}
    key = "ECDSA P-256" if args.key_type == "ec" else "RSA-2048"
    lines.insert(3, f"Certificate: {key}. Command: `python3 Benchmarks/bench.py --reps {args.reps} --seconds {args.seconds} --key-type {args.key_type} --figures {args.figures}`.")
    for fig, title in titles.items():
        if not any(fig in results[t] for t in targets):
            continue
        lines += [f"## {title}", "", "| target | per second | p50 ms | p99 ms | errors | proxy CPU µs/op | user | system |",
                  "|---|---|---|---|---|---|---|---|"]
        best = None
        for t in targets:
            rs = results[t].get(fig, [])
            rate = median(rs, "rps")
            lines.append(f"| {t} | {fmt(rate, 0)} | {fmt(median(rs, 'p50'), 2)} | {fmt(median(rs, 'p99'), 2)} | "
                         f"{sum(r['errors'] for r in rs)} | {fmt(median(rs, 'cpu_us'), 1)} | "
                         f"{fmt(median(rs, 'cpu_user_us'), 1)} | {fmt(median(rs, 'cpu_sys_us'), 1)} |")
            if t != "ferry" and rate is not None:
                best = max(best or 0, rate)
        ferry = median(results.get("ferry", {}).get(fig, []), "rps") if "ferry" in targets else None
        if ferry is not None and best:
            lines += ["", f"Ferry ÷ best peer: **{ferry / best:.2f}**"]
        lines.append("")
    def per_target(fig, title, columns, cells):
        """A table with one row per target that has figure `fig`; `cells` renders its result."""
        rows = [f"| {t} | " + " | ".join(cells(results[t][fig])) + " |" for t in targets if results[t].get(fig)]
        return [f"## {title}", "", "| target | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|",
                *rows, ""]

    lines += per_target("d", "(d) Memory per idle WebSocket (2,000 idle, RSS of all the proxy's processes)",
                        ["opened", "KiB per WebSocket"], lambda d: [str(d["opened"]), f"{d['kib_per_ws']:.1f}"])
    lines += per_target("g", "(g) Memory per idle keep-alive connection after a 64 KiB download (500 connections)",
                        ["connections", "KiB per connection"], lambda g: [str(g["count"]), f"{g['kib_per_conn']:.1f}"])
    lines += per_target("e", "(e) Mixed traffic through one prefix (WebSocket echo + keep-alive HTTP, sha256-verified)",
                        ["ok", "errors"], lambda e: [str(e["ok"]), str(e["errors"])])
    if results.get("_scale"):
        import scale
        lines += [scale.markdown(results["_scale"]), ""]
    lines += per_target("f", "(f) Reload cost: 10 reloads under load (32 connections)",
                        ["requests", "failed", "p99 ms"],
                        lambda f: [str(f["total"]), str(f["failed"]), fmt(f["p99"], 2)])
    out = Path(args.out)
    previous = out.read_text() if out.exists() else ""
    keep = previous.split("<!-- history -->", 1)[1] if "<!-- history -->" in previous else ""
    out.write_text("\n".join(lines) + "\n<!-- history -->" + keep)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
