#!/usr/bin/env python3
"""A/B of two Ferry binaries against nginx, on the bench's setup (bench.Env: same certificate,
backends, pinning): figure (a) with wrk and (c) with wsload, the binaries and nginx alternated in
every repetition so that the machine's drift hits all three alike; prints each repetition and the
medians, with the proxy's CPU time per operation.

Usage: python3 Benchmarks/ab.py BINARY_A BINARY_B [REPS] [SECONDS] [PATH] [browser]
(PATH: the file of figure (a), /tts-ws/tts/wav/1k.bin by default; /tts-ws/tts/wav/64k.bin for (a64);
`browser`: figure (a)'s requests carry ten browser-like headers, not wrk's Host only)
(build the older one in a worktree: git worktree add /tmp/old COMMIT && cd /tmp/old && swift build -c release)
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


BROWSER_HEADERS = [
    arg
    for header in (
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
        "Accept-Language: en-US,en;q=0.9,de;q=0.8",
        "Accept-Encoding: gzip, deflate, br, zstd",
        "Cookie: session=3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c; theme=dark; _ga=GA1.1.123456789.1700000000",
        "Referer: https://localhost/tts-ws/",
        "Cache-Control: no-cache",
        "Sec-Fetch-Mode: navigate",
        "Sec-Fetch-Site: same-origin",
        "Upgrade-Insecure-Requests: 1",
    )
    for arg in ("-H", header)
]
FORMAT = "a %.0f req/s, user %.1f + sys %.1f us/req | c %.0f msg/s, user %.1f + sys %.1f us/msg"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    a, b = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    secs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    path = sys.argv[5] if len(sys.argv) > 5 else "/tts-ws/tts/wav/1k.bin"
    headers = BROWSER_HEADERS if len(sys.argv) > 6 and sys.argv[6] == "browser" else ()
    env = bench.Env(Path(tempfile.mkdtemp(prefix="ferry-ab-")), Path(a))
    env.prepare()
    env.start_backends()
    env.start_nginx()
    results = {}
    try:
        for rep in range(reps):
            for name, binary in (("A", a), ("B", b), ("nginx", None)):
                if binary:
                    env.ferry_bin = Path(binary)
                    if "ferry" in env.procs:
                        env.restart("ferry")
                    else:
                        env.start_ferry()
                    time.sleep(1)
                    target = "ferry"
                else:
                    target = "nginx"
                port = bench.PORTS[target]
                bench.wrk(env, port, path, 64, 2, headers)  # warm-up
                fa = bench.with_cpu(env, target, secs, lambda: bench.wrk(env, port, path, 64, secs, headers))
                fc = bench.with_cpu(env, target, secs, lambda: bench.wsload(env, port, 64, secs))
                if fa["errors"] or fc["errors"]:
                    print(f"  {name}: {fa['errors']} errors in (a), {fc['errors']} in (c)", flush=True)
                row = (fa["rps"], fa["cpu_user_us"], fa["cpu_sys_us"], fc["rps"], fc["cpu_user_us"], fc["cpu_sys_us"])
                results.setdefault(name, []).append(row)
                print(rep, name, FORMAT % row, flush=True)
    finally:
        env.stop_all()
    for name, rows in results.items():
        medians = [statistics.median(row[i] for row in rows) for i in range(6)]
        print(f"{name} medians:", FORMAT % tuple(medians))


if __name__ == "__main__":
    main()
