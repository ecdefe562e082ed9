#!/usr/bin/env python3
"""Counts swift_retain, swift_release, swift_allocObject and malloc calls per 1 KiB request in a
Ferry worker (perf uprobes), over wrk -t1 -c16 for 4 s on the bench's setup. Counts, unlike times,
do not move between runs.

Usage: python3 Benchmarks/counts.py BINARY
Once per machine, as root:
  perf probe -x /opt/swift/usr/lib/swift/linux/libswiftCore.so swift_retain   (and swift_release,
  swift_allocObject); perf probe -x /lib/x86_64-linux-gnu/libc.so.6 malloc
"""
import sys, time, subprocess, tempfile, re
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench
env = bench.Env(Path(tempfile.mkdtemp(prefix="ferry-cnt-")), Path(sys.argv[1]))
env.prepare(); env.start_backends(); env.start_ferry(); time.sleep(1.5)
port = bench.PORTS["ferry"]
bench.wrk(env, port, "/tts-ws/tts/wav/1k.bin", 16, 2)
root = env.procs["ferry"].pid
def cpu(p):
    try:
        f = Path(f"/proc/{p}/stat").read_text().rsplit(")",1)[1].split(); return int(f[11])+int(f[12])
    except Exception: return 0
kids = bench.pids_of(root)
bench.wrk(env, port, "/tts-ws/tts/wav/1k.bin", 16, 1)
worker = max(kids, key=cpu)
events = "probe_libswiftCore:swift_retain,probe_libswiftCore:swift_release,probe_libswiftCore:swift_allocObject,probe_libc:malloc"
st = subprocess.Popen(["perf", "stat", "-x", ",", "-e", events, "-p", str(worker), "-o", str(env.work / "counts.txt")])
time.sleep(0.3)
out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d4s", f"https://127.0.0.1:{port}/tts-ws/tts/wav/1k.bin"], capture_output=True, text=True).stdout
time.sleep(0.3)
st.send_signal(2); st.wait()
requests = int(re.search(r"(\d+) requests in", out).group(1))
print("requests", requests)
for line in Path(str(env.work / "counts.txt")).read_text().splitlines():
    parts = line.split(",")
    if len(parts) > 2 and parts[0].strip().isdigit():
        print(f"{parts[2]}: {int(parts[0]) / requests:.1f} per request")
env.stop_all()
