#!/usr/bin/env python3
"""Scale run: how many idle WebSockets one Ferry instance holds, and requests/s with 1 and 2 workers.

Idle WebSockets: Ferry with WORKERS workers (each holds at most ~9,900 proxied WebSockets under the
20,000-descriptor limit: two descriptors each), six wsecho backends (one per route, each below its own
descriptor limit), and eight wsload generators, each from its own loopback source address
(127.0.0.2 … 127.0.0.9: the ephemeral-port range is per source and destination). Reports how many
WebSockets were open at once, Ferry's RSS (master and workers) before and after, KiB per WebSocket,
and whether a fresh HTTPS request is still answered at the plateau.

Worker scaling: HTTPS keep-alive GET of 1 KiB through Ferry with 1 and then 2 workers (wrk, 2
threads, 64 connections, nothing pinned: on a 2-core machine the load generator shares the cores).

Usage: scale.py [--target N] [--workers W] [--quick] [--out FILE]   (also used by bench.py, figure s)
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

BACKENDS = 6
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]
SCALE_PORT = 18460
BACKEND_PORT = 18470


def ferry_config(env, workers, port):
    state = env.work / "scale-state"
    state.mkdir(exist_ok=True)
    backends = "\n".join(f"""
[[backend]]
name = "b{i}"
address = "127.0.0.1:{BACKEND_PORT + i}"

[[route]]
path = "/s{i}"
backend = "b{i}"
""" for i in range(1, BACKENDS + 1))
    conf = env.work / f"scale-{workers}.toml"
    conf.write_text(f"""
[master]
workers = {workers}
control_socket = "{state}/control.sock"
state_dir = "{state}"
access_log = "off"
log_level = "warning"

[[listen]]
name = "https"
address = "127.0.0.1:{port}"
[listen.tls]
certificate = "{env.cert}"
key = "{env.key}"
{backends}
[[route]]
path = "/ping"
respond = 200
body = "pong"

[limits]
max_connections_per_worker = 9900
""")
    return conf


def start_ferry(env, workers, port):
    conf = ferry_config(env, workers, port)
    log = open(env.work / f"ferry-scale-{workers}.log", "w")
    proc = subprocess.Popen([str(env.ferry_bin), "serve", "--config", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    bench.wait_port(port, timeout=30)
    time.sleep(1.5)  # all workers up
    return proc


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def https_ok(port, path="/ping"):
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                        f"https://127.0.0.1:{port}{path}"], capture_output=True, text=True)
    return r.stdout.strip() == "200"


def idle_websockets(env, target, workers, deadline_s=360):
    """Opens `target` idle WebSockets through one Ferry; returns the figures."""
    backends = []
    for i in range(1, BACKENDS + 1):
        backends.append(subprocess.Popen([str(env.work / "wsecho"), str(BACKEND_PORT + i)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True))
    for i in range(1, BACKENDS + 1):
        bench.wait_port(BACKEND_PORT + i)
    ferry = start_ferry(env, workers, SCALE_PORT)
    loads = []
    started = time.time()
    try:
        before = bench.rss_kib(ferry.pid)
        # 12 generators: two per backend (≤ 16,700 connections each, under its descriptor limit),
        # at most two per source address (≤ 16,700 ephemeral ports each, of ~28,000).
        generators = 2 * BACKENDS
        per = -(-target // generators)
        for n in range(generators):
            source = SOURCES[n % len(SOURCES)]
            route = f"/s{n % BACKENDS + 1}"
            envv = dict(os.environ, WSLOAD_SOURCE=source)
            loads.append(subprocess.Popen([str(env.work / "wsload"), "idle", "127.0.0.1", str(SCALE_PORT), route,
                                           str(per), "240"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True, env=envv, start_new_session=True))
        opened = 0
        for load in loads:
            remaining = max(1, deadline_s - (time.time() - started))
            line = ""
            end = time.time() + remaining
            while time.time() < end:
                line = load.stdout.readline()
                if line.startswith("READY") or not line:
                    break
            opened += int(line.split()[1]) if line.startswith("READY") else 0
        ramp = time.time() - started
        time.sleep(3)
        after = bench.rss_kib(ferry.pid)
        still_serving = https_ok(SCALE_PORT)
        status = subprocess.run([str(env.ferry_bin), "status", "--json", "--socket",
                                 str(env.work / "scale-state" / "control.sock")], capture_output=True, text=True)
        tunnels, pauses = None, None
        try:
            doc = json.loads(status.stdout)
            stats = [w.get("stats") or {} for w in doc.get("workers", [])]
            tunnels = sum(s.get("activeTunnels", 0) for s in stats)
            pauses = sum(s.get("acceptPauses", 0) for s in stats)
        except (ValueError, AttributeError):
            pass
        return {"target": target, "workers": workers, "opened": opened, "tunnels_in_status": tunnels,
                "accept_pauses": pauses, "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
                "kib_per_ws": (after - before) / max(opened, 1), "ramp_s": ramp, "https_ok_at_plateau": still_serving}
    finally:
        for load in loads:
            try:
                load.stdin.close()
            except OSError:
                pass
        for load in loads:
            try:
                load.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(load.pid, signal.SIGKILL)
        stop(ferry)
        for b in backends:
            b.kill()
            b.wait()


def wrk_rate(url, seconds):
    subprocess.run(["wrk", "-t2", "-c64", "-d2s", url], capture_output=True)
    text = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", url],
                          capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))


def nginx_rate(env, workers, seconds):
    """The same measurement for nginx (the peer), with `worker_processes` 1 or 2."""
    conf = env.work / f"scaling-nginx-{workers}.conf"
    conf.write_text(f"""
daemon off; worker_processes {workers}; pid {env.work}/scaling-nginx.pid; error_log {env.work}/scaling-nginx.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream files {{ server 127.0.0.1:{bench.STATIC_PORT}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{SCALE_PORT} ssl;
    ssl_certificate {env.cert}; ssl_certificate_key {env.key};
    keepalive_requests 100000;
    location /tts-ws/tts/wav/ {{ proxy_pass http://files; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf)], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        bench.wait_port(SCALE_PORT, timeout=15)
        return wrk_rate(f"https://127.0.0.1:{SCALE_PORT}/tts-ws/tts/wav/1k.bin", seconds)
    finally:
        stop(proc)


def worker_scaling(env, seconds):
    """Requests/s of 1 KiB keep-alive GETs with 1 and 2 workers, nothing pinned; nginx alike."""
    out = {}
    static = subprocess.Popen(["nginx", "-c", str(env.work / "static-nginx.conf")], start_new_session=True)
    bench.wait_port(bench.STATIC_PORT)
    try:
        for workers in (1, 2):
            conf = env.work / f"scaling-{workers}.toml"
            text = ferry_config(env, workers, SCALE_PORT).read_text()
            text += f"""
[[backend]]
name = "files"
address = "127.0.0.1:{bench.STATIC_PORT}"

[[route]]
path = "/tts-ws/tts/wav/"
backend = "files"

[pool]
max_idle_per_backend = 64
"""
            conf.write_text(text)
            log = open(env.work / f"ferry-scaling-{workers}.log", "w")
            proc = subprocess.Popen([str(env.ferry_bin), "serve", "--config", str(conf)], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                bench.wait_port(SCALE_PORT, timeout=30)
                time.sleep(1.5)
                out[workers] = wrk_rate(f"https://127.0.0.1:{SCALE_PORT}/tts-ws/tts/wav/1k.bin", seconds)
            finally:
                stop(proc)
            time.sleep(0.5)
            out[f"nginx{workers}"] = nginx_rate(env, workers, seconds)
            time.sleep(0.5)
    finally:
        os.killpg(static.pid, signal.SIGTERM)
        static.wait(timeout=10)
    out["ratio"] = out[2] / out[1] if out.get(1) else None
    out["nginx_ratio"] = out["nginx2"] / out["nginx1"] if out.get("nginx1") else None
    return out


def run(ferry_bin, target, workers, seconds, work=None):
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="ferry-scale-"))
    work.chmod(0o755)
    env = bench.Env(work, Path(ferry_bin))
    if own:
        env.prepare()
        # The static nginx config that bench.start_backends writes, for the scaling part.
        (work / "static-nginx.conf").write_text(f"""
daemon off; worker_processes 1; pid {work}/static-nginx.pid; error_log {work}/static-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{bench.STATIC_PORT}; root {env.www}; }} }}
""")
    result = {"idle": idle_websockets(env, target, workers), "scaling": worker_scaling(env, seconds)}
    return result


def markdown(result):
    i, s = result["idle"], result["scaling"]
    return "\n".join([
        f"## (s) Scale: idle WebSockets held by one Ferry ({i['workers']} workers), and 1 → 2 workers", "",
        "| target | opened | in status | accept pauses | RSS before → after (MiB) | KiB per WebSocket | ramp s | HTTPS at plateau |",
        "|---|---|---|---|---|---|---|---|",
        f"| {i['target']:,} | {i['opened']:,} | {i['tunnels_in_status']} | {i['accept_pauses']} | "
        f"{i['rss_before_mib']:.0f} → {i['rss_after_mib']:.0f} | {i['kib_per_ws']:.1f} | {i['ramp_s']:.0f} | "
        f"{'200' if i['https_ok_at_plateau'] else 'FAILED'} |",
        "",
        "| workers | Ferry requests/s | nginx requests/s (same run) |", "|---|---|---|",
        f"| 1 | {s.get(1, 0):,.0f} | {s.get('nginx1', 0):,.0f} |",
        f"| 2 | {s.get(2, 0):,.0f} | {s.get('nginx2', 0):,.0f} |", "",
        f"2 workers ÷ 1 worker: Ferry **{s['ratio']:.2f}**, nginx {s['nginx_ratio']:.2f} (1 KiB keep-alive GETs, "
        "wrk -t2 -c64, nothing pinned: the load generator and the file backend share the two cores).", ""])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", default=str(bench.ROOT / ".build/release/ferry"))
    ap.add_argument("--target", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="5,000 WebSockets, 2 workers")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.quick:
        args.target, args.workers = 5000, 2
    result = run(args.ferry, args.target, args.workers, args.seconds)
    print(json.dumps(result, default=str))
    text = markdown(result)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
