#!/usr/bin/env python3
"""Keep-alive HTTPS GETs from THREADS threads for SECONDS seconds (bounded), reconnecting when a
connection closes; prints one JSON line: ok, failed (a non-200 answer or a request that got no
answer) and the first failures. Nothing here decides pass or fail.

usage: steady_gets.py PORT PATH SECONDS THREADS
"""
import http.client
import json
import ssl
import sys
import threading
import time

port, path, seconds, threads = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
result = {"ok": 0, "failed": 0, "failures": []}
lock = threading.Lock()
end = time.monotonic() + seconds


def worker():
    connection = None
    while time.monotonic() < end:
        try:
            if connection is None:
                connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            good = response.status == 200
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            good = False
            response = error
            connection = None
        with lock:
            if good:
                result["ok"] += 1
            else:
                result["failed"] += 1
                if len(result["failures"]) < 5:
                    result["failures"].append(str(getattr(response, "status", response)))


pool = [threading.Thread(target=worker) for _ in range(threads)]
for thread in pool:
    thread.start()
for thread in pool:
    thread.join()
print(json.dumps(result), flush=True)
