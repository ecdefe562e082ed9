#!/usr/bin/env python3
"""Runs `ferry serve` under systemd-socket-activate with a NOTIFY_SOCKET this script owns, checks
that it serves HTTPS on the passed socket, reloads it, stops it, and prints what systemd would
have received. Usage: socket_activation.py FERRY CONFIG PORT CAFILE"""
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import http.client

ferry, config, port, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
notify_path = os.path.join(tempfile.mkdtemp(), "notify.sock")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
notify.settimeout(0.2)
messages = []


def drain(seconds):
    end = time.time() + seconds
    while time.time() < end:
        try:
            messages.append(notify.recv(4096).decode())
        except socket.timeout:
            pass


log = tempfile.NamedTemporaryFile(prefix="ferry-sd-", suffix=".log", delete=False)
proc = subprocess.Popen(
    ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=https", "-E", f"NOTIFY_SOCKET={notify_path}",
     "-E", "PATH", ferry, "serve", "--config", config],
    stdout=log, stderr=subprocess.STDOUT)
result = {"statuses": []}
try:
  try:
      # systemd-socket-activate starts the program on the first connection, as systemd would.
      time.sleep(0.5)
      trigger = socket.create_connection(("127.0.0.1", port), timeout=10)
      deadline = time.time() + 30
      while time.time() < deadline and not any("READY=1" in m for m in messages):
          drain(0.3)
      trigger.close()
      ctx = ssl.create_default_context(cafile=cafile)
      for _ in range(4):
          conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
          conn.request("GET", "/")
          result["statuses"].append(conn.getresponse().status)
          conn.close()
      proc.send_signal(1)  # SIGHUP: reload
      drain(4)
      proc.terminate()
      proc.wait(timeout=30)
      drain(0.5)
  except Exception as error:  # noqa: BLE001
    result["error"] = repr(error)
finally:
    if proc.poll() is None:
        proc.kill()
    result["exit"] = proc.returncode
    result["messages"] = messages
    log.close()
    result["log_tail"] = open(log.name, errors="replace").read()[-1500:]
    os.unlink(log.name)
print(json.dumps(result))
