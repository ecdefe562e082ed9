#!/usr/bin/env python3
"""Reloads a running master RATE times a second for SECONDS through its control socket, each time
after changing CONFIG (the `body = "vN"` of a respond route becomes the reload's number), waiting
for each answer. Prints one JSON line: reloads, failed (answers not ok, with samples), slowest and
median answer in ms. Nothing here decides.

Usage: reload_storm.py CONTROL_SOCKET CONFIG RATE SECONDS
"""
import json
import re
import socket
import sys
import time

control, config, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
text = open(config).read()
result = {"reloads": 0, "failed": 0, "samples": [], "ms": []}
start = time.monotonic()
number = 1000
while time.monotonic() - start < seconds:
    due = start + result["reloads"] / rate
    if time.monotonic() < due:
        time.sleep(due - time.monotonic())
    number += 1
    with open(config + ".tmp", "w") as file:
        file.write(re.sub(r'body = "v\d+"', f'body = "v{number}"', text))
    import os
    os.replace(config + ".tmp", config)
    began = time.monotonic()
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(30)
        connection.connect(control)
        connection.sendall(b'{"command":"reload"}\n')
        data = b""
        while b"\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    result["ms"].append((time.monotonic() - began) * 1000)
    result["reloads"] += 1
    answer = json.loads(data or b"{}")
    if not answer.get("ok"):
        result["failed"] += 1
        if len(result["samples"]) < 5:
            result["samples"].append(answer.get("message", "no answer"))
durations = sorted(result.pop("ms"))
result["median_ms"] = round(durations[len(durations) // 2], 1) if durations else None
result["slowest_ms"] = round(durations[-1], 1) if durations else None
result["last_body"] = f"v{number}"
print(json.dumps(result), flush=True)
