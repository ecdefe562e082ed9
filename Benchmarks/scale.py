#!/usr/bin/env python3
"""Scale run: how many idle WebSockets one Ferry instance holds, and requests/s with 1 and 2 workers.

Idle WebSockets: Ferry with WORKERS workers (each holds at most ~9,900 proxied WebSockets under the
20,000-descriptor limit: two descriptors each), six wsecho backends (one per route /s1 … /s6, each
below its own descriptor limit), and twelve wsload generators (two per backend, ≤ ~8,400 each at
100,000), each bound to a loopback source address (127.0.0.2 … 127.0.0.9: the ephemeral-port range,
~28,000, is per source and destination; at most two generators share one). The generators ramp with
non-blocking setups (at most INFLIGHT handshakes each at once, each bounded to 20 s, the whole ramp
bounded) and report how many WebSockets they opened and why the others failed (EMFILE, no address,
refused, TLS, upgrade, timeout). Reported: WebSockets open at once, Ferry's RSS (master and workers,
found by parent pid in /proc) before and after, KiB per WebSocket, per-worker spread from
`ferry status`, a sample of the held WebSockets echoing a frame at the plateau, and whether fresh
HTTPS requests are still answered there (/ping answered by Ferry, /s1 through a backend).

Worker scaling: HTTPS keep-alive GET of 1 KiB through Ferry with 1 and then 2 workers (wrk, 2
threads, 64 connections, nothing pinned: on a 2-core machine the load generator shares the cores),
nginx alike in the same run.

Every process it starts is in its own session and is killed (process group, then anything left in
that session) on the way out, whatever happens; every wait is bounded.

Usage: scale.py [--target N] [--workers W] [--quick] [--out FILE]   (also used by bench.py, figure s)
       --quick: 5,000 WebSockets through 2 workers, 3 s rates (about a minute).
"""
import argparse
import json
import math
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

BACKENDS = 6
GENERATORS_PER_BACKEND = 2
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]
SCALE_PORT = 18460
BACKEND_PORT = 18470
MAX_CONNECTIONS_PER_WORKER = 9800
# Setups in flight per generator. 12 × 24 keeps the workers' accept queues from overflowing: each
# worker's listening socket ends up with NIO's backlog of 128 whatever `backlog` says (seen with ss -ltn);
# at 64 the ramp had ~9,000 accept-queue overflows and ~80 setups past their 20 s, at 24 none, same ramp time.
INFLIGHT = 24
BACKLOG = 4096           # Ferry's listen backlog ([[listen]] backlog; default 511, somaxconn here 4096)
RAMP_S = 210             # the generators' own bound on their ramp
CHECK_PER_GENERATOR = 16  # held WebSockets per generator that must echo a frame at the plateau

_started = []  # every Popen this module started (each a session leader)


def spawn(argv, **kw):
    kw.setdefault("start_new_session", True)
    p = subprocess.Popen(argv, **kw)
    _started.append(p)
    return p


def _session_members(sids):
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) in sids:  # field 6 of stat: session id
                out.append(int(d.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def stop(proc, sig=signal.SIGTERM, timeout=20):
    """Stops one started process: its process group with `sig`, then SIGKILL, then whatever is left in its session."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in _session_members({proc.pid}):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if proc in _started:
        _started.remove(proc)


def stop_everything():
    for p in list(_started):
        stop(p, timeout=5)


def descendants(root):
    """root and all its descendants, by parent pid from /proc/*/stat."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, pp in parent.items() if pp in frontier]
        out += frontier
    return out


def rss_of(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ferry_rss(master):
    """KiB: (total, master, {worker pid: rss}) for the master and all its descendants."""
    pids = descendants(master)
    per = {pid: rss_of(pid) for pid in pids if pid != master}
    m = rss_of(master)
    return m + sum(per.values()), m, per


def ferry_config(env, workers, port):
    state = env.work / "scale-state"
    backends = "\n".join(f"""
[[backend]]
name = "b{i}"
address = "127.0.0.1:{BACKEND_PORT + i}"

[[route]]
path = "/s{i}"
backend = "b{i}"
""" for i in range(1, BACKENDS + 1))
    conf = env.work / f"scale-{workers}.toml"
    conf.write_text(env.ferry_head(state, workers, port, BACKLOG) + f"""{backends}
[[route]]
path = "/ping"
respond = 200
body = "pong"

[limits]
max_connections_per_worker = {MAX_CONNECTIONS_PER_WORKER}
""")
    return conf


def start_ferry(env, workers, port, conf=None, name=None):
    conf = conf or ferry_config(env, workers, port)
    log = open(env.work / f"{name or f'ferry-scale-{workers}'}.log", "w")
    proc = spawn([str(env.ferry_bin), "serve", "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    bench.wait_port(port, timeout=30)
    deadline = time.time() + 15  # all workers up
    while time.time() < deadline and len(descendants(proc.pid)) < workers + 1:
        time.sleep(0.2)
    time.sleep(1)
    return proc


def https_code(port, path="/ping"):
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                        f"https://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=20)
    return r.stdout.strip() or "none"


def ferry_status(env):
    try:
        r = subprocess.run([str(env.ferry_bin), "status", "--json", "--socket",
                            str(env.work / "scale-state" / "control.sock")], capture_output=True, text=True, timeout=20)
        return json.loads(r.stdout)
    except (ValueError, subprocess.TimeoutExpired):
        return None


def log_problems(path, limit=12):
    """Error/warning lines of a Ferry log, the most frequent first (a flood shows up as one line with a count)."""
    counts = {}
    try:
        for line in Path(path).read_text(errors="replace").splitlines():
            if re.search(r"error|warn|fatal|crash|EMFILE|descriptor", line, re.I):
                key = re.sub(r"\d+", "N", line)[:300]
                counts.setdefault(key, [0, line[:300]])[0] += 1
    except OSError:
        return []
    return [f"{n}× {line}" for n, line in sorted(counts.values(), key=lambda v: -v[0])[:limit]]


def read_lines_until(procs, prefix, deadline):
    """The first stdout line starting with `prefix` from each process, waiting until `deadline` at most."""
    got = {}
    sel = selectors.DefaultSelector()
    bufs = {}
    for p in procs:
        os.set_blocking(p.stdout.fileno(), False)
        sel.register(p.stdout, selectors.EVENT_READ, p)
        bufs[p] = b""
    while len(got) < len(procs) and time.time() < deadline:
        for key, _ in sel.select(timeout=max(0.1, min(1.0, deadline - time.time()))):
            p = key.data
            chunk = p.stdout.read1(65536) if hasattr(p.stdout, "read1") else os.read(p.stdout.fileno(), 65536)
            if not chunk:
                sel.unregister(p.stdout)
                got.setdefault(p, None)
                continue
            bufs[p] += chunk
            while b"\n" in bufs[p]:
                line, bufs[p] = bufs[p].split(b"\n", 1)
                if line.decode(errors="replace").startswith(prefix) and p not in got:
                    got[p] = line.decode(errors="replace")
    sel.close()
    return got


def listen_overflows():
    """TcpExt ListenOverflows (accept queue full: the handshake's last ACK dropped, the client waits), host-wide."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            if head.startswith("TcpExt:"):
                return int(dict(zip(head.split()[1:], vals.split()[1:]))["ListenOverflows"])
    except (OSError, KeyError, ValueError):
        pass
    return 0


def parse_ready(line):
    if not line or not line.startswith("READY"):
        return {"opened": 0, "failed": None}
    parts = line.split()
    out = {"opened": int(parts[1])}
    for kv in parts[2:]:
        k, _, v = kv.partition("=")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def idle_websockets(env, target, workers, deadline_s=300):
    """Opens `target` idle WebSockets through one Ferry; returns the figures."""
    started = time.time()
    backends, loads, ferry = [], [], None
    try:
        for i in range(1, BACKENDS + 1):
            backends.append(spawn([str(env.work / "wsecho"), str(BACKEND_PORT + i)],
                                  stdout=subprocess.DEVNULL, stderr=open(env.work / f"wsecho-{i}.log", "w")))
        for i in range(1, BACKENDS + 1):
            bench.wait_port(BACKEND_PORT + i)
        ferry = start_ferry(env, workers, SCALE_PORT)
        ferry_log = env.work / f"ferry-scale-{workers}.log"
        before, before_master, before_workers = ferry_rss(ferry.pid)
        generators = GENERATORS_PER_BACKEND * BACKENDS
        per = math.ceil(target / generators)
        ramp_s = min(RAMP_S, deadline_s - 60)
        ramp_start = time.time()
        overflows_before = listen_overflows()
        for n in range(generators):
            source = SOURCES[n % len(SOURCES)]
            route = f"/s{n % BACKENDS + 1}"
            envv = dict(os.environ, WSLOAD_SOURCE=source, WSLOAD_INFLIGHT=str(INFLIGHT))
            loads.append(spawn([str(env.work / "wsload"), "idle", "127.0.0.1", str(SCALE_PORT), route,
                                str(per), str(ramp_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=open(env.work / f"wsload-{n}.log", "w"), env=envv))
        ready = read_lines_until(loads, "READY", ramp_start + ramp_s + 30)
        ramp = time.time() - ramp_start
        overflows = listen_overflows() - overflows_before
        gens = []
        for n, load in enumerate(loads):
            r = parse_ready(ready.get(load))
            r["source"], r["route"] = SOURCES[n % len(SOURCES)], f"/s{n % BACKENDS + 1}"
            gens.append(r)
        opened = sum(g["opened"] for g in gens)
        failures = {}
        for g in gens:
            for k in ("emfile", "addr", "connect", "tls", "upgrade", "timeout", "unstarted"):
                failures[k] = failures.get(k, 0) + g.get(k, 0)
        no_ready = sum(1 for load in loads if not (ready.get(load) or "").startswith("READY"))
        time.sleep(3)  # let the workers settle and report their stats
        after, after_master, after_workers = ferry_rss(ferry.pid)
        # A sample of the held WebSockets must still echo a frame through Ferry.
        for load in loads:
            try:
                load.stdin.write(f"CHECK {CHECK_PER_GENERATOR}\n".encode())
                load.stdin.flush()
            except OSError:
                pass
        checked = read_lines_until(loads, "CHECKED", time.time() + 15)
        check_ok = sum(int(line.split()[1]) for line in checked.values() if line)
        check_n = sum(int(line.split()[2]) for line in checked.values() if line)
        ping = https_code(SCALE_PORT, "/ping")
        through = https_code(SCALE_PORT, "/s1")
        status = ferry_status(env)
        spread, limits, pauses, accept_errors, tls_failures = [], [], 0, 0, {}
        for w in (status or {}).get("workers", []):
            s = w.get("stats") or {}
            spread.append(s.get("activeTunnels", 0))
            limits.append(s.get("connectionLimit", 0))
            pauses += s.get("acceptPauses", 0)
            accept_errors += s.get("acceptErrors", 0)
            for reason, count in (s.get("tlsFailures") or {}).items():
                tls_failures[reason] = tls_failures.get(reason, 0) + count
        alive = ferry.poll() is None
        result = {
            "target": target, "workers": workers, "generators": generators, "per_generator": per,
            "opened": opened, "failures": failures, "generators_without_ready": no_ready,
            "tunnels_in_status": sum(spread) if spread else None,
            "tunnels_per_worker": sorted(spread), "worker_limits": sorted(set(limits)),
            "accept_pauses": pauses, "accept_errors": accept_errors, "tls_failures": tls_failures,
            "listen_overflows": overflows,
            "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
            "rss_master_mib": (before_master / 1024, after_master / 1024),
            "rss_worker_max_mib": max(after_workers.values(), default=0) / 1024,
            "kib_per_ws": (after - before) / max(opened, 1), "ramp_s": ramp,
            "check_ok": check_ok, "check_n": check_n,
            "https_ping": ping, "https_backend": through,
            "https_ok_at_plateau": ping == "200" and through == "200",
            "ferry_alive": alive, "elapsed_s": None, "ferry_log": log_problems(ferry_log),
        }
    finally:
        for load in loads:
            try:
                load.stdin.close()
            except OSError:
                pass
        deadline = time.time() + 30
        for load in loads:
            try:
                load.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
            stop(load, timeout=1)
        if ferry:
            stop(ferry, timeout=20)  # graceful: the clients are gone, nothing is left to drain
        for b in backends:
            stop(b, timeout=5)
    result["elapsed_s"] = time.time() - started
    result["ferry_log"] = log_problems(env.work / f"ferry-scale-{workers}.log")
    return result


def wrk_rate(url, seconds):
    subprocess.run(["wrk", "-t2", "-c64", "-d2s", url], capture_output=True, timeout=60)
    text = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", url],
                          capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    return float(m.group(1)) if m else 0.0


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
    proc = spawn(["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_port(SCALE_PORT, timeout=15)
        return wrk_rate(f"https://127.0.0.1:{SCALE_PORT}/tts-ws/tts/wav/1k.bin", seconds)
    finally:
        stop(proc)


def worker_scaling(env, seconds):
    """Requests/s of 1 KiB keep-alive GETs with 1 and 2 workers, nothing pinned; nginx alike."""
    out = {}
    static = spawn(["nginx", "-c", str(env.work / "static-nginx.conf")])
    try:
        bench.wait_port(bench.STATIC_PORT)
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
            proc = start_ferry(env, workers, SCALE_PORT, conf=conf, name=f"ferry-scaling-{workers}")
            try:
                out[workers] = wrk_rate(f"https://127.0.0.1:{SCALE_PORT}/tts-ws/tts/wav/1k.bin", seconds)
            finally:
                stop(proc)
            time.sleep(0.5)
            out[f"nginx{workers}"] = nginx_rate(env, workers, seconds)
            time.sleep(0.5)
    finally:
        stop(static)
    out["ratio"] = out[2] / out[1] if out.get(1) else None
    out["nginx_ratio"] = out["nginx2"] / out["nginx1"] if out.get("nginx1") else None
    return out


def run(ferry_bin, target, workers, seconds, work=None):
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="ferry-scale-"))
    work.chmod(0o755)
    env = bench.Env(work, Path(ferry_bin))
    if not (work / "static-nginx.conf").exists() or own:
        if own:
            env.prepare()
        # The static nginx config that bench.start_backends writes, for the scaling part.
        (work / "static-nginx.conf").write_text(f"""
daemon off; worker_processes 1; pid {work}/static-nginx.pid; error_log {work}/static-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{bench.STATIC_PORT}; root {env.www}; }} }}
""")
    started = time.time()
    try:
        result = {"idle": idle_websockets(env, target, workers)}
        print(f"scale: idle {json.dumps(result['idle'], default=str)}", file=sys.stderr, flush=True)
        result["scaling"] = worker_scaling(env, seconds)
    finally:
        stop_everything()
    result["elapsed_s"] = time.time() - started
    result["work"] = str(work)
    return result


def markdown(result):
    i, s = result["idle"], result["scaling"]
    fails = ", ".join(f"{k} {v:,}" for k, v in i.get("failures", {}).items() if v) or "none"
    spread = i.get("tunnels_per_worker") or []
    lines = [
        f"## (s) Scale: idle WebSockets held by one Ferry ({i['workers']} workers), and 1 → 2 workers", "",
        f"{i['generators']} wsload generators × {i['per_generator']:,} (8 loopback source addresses, 6 wsecho "
        f"backends), at most {INFLIGHT} setups in flight each; `max_connections_per_worker = "
        f"{MAX_CONNECTIONS_PER_WORKER}` (limit in effect: {', '.join(map(str, i.get('worker_limits') or [])) or '?'}), "
        f"listen backlog {BACKLOG}. During the ramp: {i.get('listen_overflows', 0):,} accept-queue overflows "
        f"(host-wide TcpExt ListenOverflows); TLS failures in Ferry's status: "
        f"{', '.join(f'{k} {v}' for k, v in (i.get('tls_failures') or {}).items()) or 'none'} (the harness's "
        "port probes, plain TCP connect-and-close, count as closed_before_client_hello).",
        "",
        "| target | opened | in status | per worker (min–max) | failed setups | accept pauses / errors | "
        "RSS before → after (MiB) | KiB per WebSocket | ramp s | held sample echoes | HTTPS at plateau (/ping, /s1) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {i['target']:,} | {i['opened']:,} | {i['tunnels_in_status']} | "
        f"{(f'{min(spread):,}–{max(spread):,}') if spread else '–'} | {fails} | "
        f"{i['accept_pauses']} / {i.get('accept_errors', 0)} | "
        f"{i['rss_before_mib']:.0f} → {i['rss_after_mib']:.0f} | {i['kib_per_ws']:.1f} | {i['ramp_s']:.0f} | "
        f"{i.get('check_ok', 0)}/{i.get('check_n', 0)} | {i.get('https_ping')}, {i.get('https_backend')} |",
        "",
    ]
    if i.get("ferry_log"):
        lines += ["Ferry's log (warnings and errors, most frequent first):", "", "```",
                  *i["ferry_log"], "```", ""]
    lines += [
        "| workers | Ferry requests/s | nginx requests/s (same run) |", "|---|---|---|",
        f"| 1 | {s.get(1, 0):,.0f} | {s.get('nginx1', 0):,.0f} |",
        f"| 2 | {s.get(2, 0):,.0f} | {s.get('nginx2', 0):,.0f} |", "",
        f"2 workers ÷ 1 worker: Ferry **{(s.get('ratio') or 0):.2f}**, nginx {(s.get('nginx_ratio') or 0):.2f} "
        "(1 KiB keep-alive GETs, wrk -t2 -c64, nothing pinned: the load generator and the file backend share the "
        "two cores).", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", default=str(bench.ROOT / ".build/release/ferry"))
    ap.add_argument("--target", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="5,000 WebSockets, 2 workers, 3 s rates")
    ap.add_argument("--inflight", type=int, default=INFLIGHT, help="setups in flight per generator")
    ap.add_argument("--out")
    args = ap.parse_args()
    globals()["INFLIGHT"] = args.inflight
    if args.quick:
        args.target, args.workers, args.seconds = 5000, 2, 3
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))  # unwinds through the finally blocks: everything is stopped
    try:
        result = run(args.ferry, args.target, args.workers, args.seconds)
    finally:
        stop_everything()
    print(json.dumps(result, default=str))
    text = markdown(result) + f"\nWhole run: {result['elapsed_s']:.0f} s.\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
