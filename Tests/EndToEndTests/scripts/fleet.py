#!/usr/bin/env python3
"""A fleet on one machine (issue 19): network namespaces joined by a bridge, three Ferry hosts
behind HAProxy in TCP mode (send-proxy-v2, health checks on Ferry's /ready), one backend, and a
client in a namespace of its own. Runs every scenario and prints one JSON document of what it
measured; the Swift test decides pass or fail. Everything it starts is bounded in time and torn
down at the end (processes killed, namespaces deleted), also on failure.

usage: fleet.py FERRY_BINARY WORK_DIR            the scenarios
       fleet.py --can-run                        exit 0 if network namespaces can be made here
       fleet.py load HOST PORT THREADS STOP_FILE MAX_SECONDS    (internal: the client's load)

Addresses (10.77.0.0/24 on a bridge in a namespace of its own, nothing in the caller's namespace):
client .10, balancer .2, Ferry hosts .11 .12 .13, backend .20.
"""
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

NET = "10.77.0"
CLIENT, BALANCER, BACKEND = f"{NET}.10", f"{NET}.2", f"{NET}.20"
HOSTS = {"h1": f"{NET}.11", "h2": f"{NET}.12", "h3": f"{NET}.13"}
TLS_PORT, HEALTH_PORT, BACKEND_PORT = 8443, 8080, 9000


def run(*command, check=True, timeout=30, **kwargs):
    return subprocess.run(command, check=check, timeout=timeout, capture_output=True, text=True, **kwargs)


def can_run():
    name = f"ffprobe{os.getpid()}"
    try:
        run("ip", "netns", "add", name)
    except (OSError, subprocess.SubprocessError):
        return False
    run("ip", "netns", "del", name, check=False)
    return True


# ---------------------------------------------------------------------------------------------
# The client's load: keep-alive HTTPS GETs through the balancer until STOP_FILE exists.


def load(host, port, threads, stop_file, max_seconds):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import http.client

    started = time.monotonic()
    end = started + max_seconds
    lock = threading.Lock()
    result = {"ok": 0, "failed": 0, "failures": [], "by_host": {}, "client_addresses": {}, "connections": 0}

    def worker():
        connection = None
        while time.monotonic() < end and not os.path.exists(stop_file):
            try:
                if connection is None:
                    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
                    with lock:
                        result["connections"] += 1
                connection.request("GET", "/fleet")
                response = connection.getresponse()
                body = response.read()
                good = response.status == 200
                if good:
                    answer = json.loads(body)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
                error = None if good else f"status {response.status}"
            except (OSError, http.client.HTTPException, ValueError) as failure:
                good, error = False, f"{type(failure).__name__}: {failure}"
                if connection is not None:
                    connection.close()
                connection = None
            with lock:
                if good:
                    result["ok"] += 1
                    result["by_host"][answer["peer"]] = result["by_host"].get(answer["peer"], 0) + 1
                    seen = answer["xff"]
                    result["client_addresses"][seen] = result["client_addresses"].get(seen, 0) + 1
                else:
                    result["failed"] += 1
                    if len(result["failures"]) < 50:
                        result["failures"].append({"t": round(time.monotonic() - started, 3), "error": error})

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    result["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The fleet.

BACKEND_SCRIPT = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"peer": self.client_address[0], "xff": self.headers.get("X-Forwarded-For", ""),
                           "forwarded": self.headers.get("Forwarded", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""


class Fleet:
    def __init__(self, ferry, work):
        self.ferry = ferry
        self.work = work
        self.tag = f"ff{os.getpid() % 100000}"
        self.namespaces = []
        self.processes = []  # (name, Popen) of everything started, killed at teardown
        self.masters = {}  # host → Popen of its `ferry serve`
        self.logs = {}
        self.events = []

    def note(self, text):
        self.events.append(f"{time.strftime('%H:%M:%S')} {text}")

    # -- network --------------------------------------------------------------------------------

    def ns(self, name):
        return f"{self.tag}-{name}"

    def setup_network(self):
        switch = self.ns("sw")
        run("ip", "netns", "add", switch)
        self.namespaces.append(switch)
        run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", switch, "link", "set", "br0", "up")
        members = {"client": CLIENT, "lb": BALANCER, "be": BACKEND, **HOSTS}
        for index, (name, address) in enumerate(members.items()):
            namespace = self.ns(name)
            run("ip", "netns", "add", namespace)
            self.namespaces.append(namespace)
            port = f"p{index}"
            run("ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            run("ip", "-n", switch, "link", "set", port, "master", "br0", "up")
            run("ip", "-n", namespace, "link", "set", "lo", "up")
            run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", namespace, "link", "set", "eth0", "up")

    def spawn(self, name, namespace, command, log=None):
        out = open(log, "ab") if log else subprocess.DEVNULL
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(namespace), *command], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.processes.append((name, process))
        return process

    def in_ns(self, namespace, *command, check=False, timeout=30):
        return run("ip", "netns", "exec", self.ns(namespace), *command, check=check, timeout=timeout)

    # -- parts ----------------------------------------------------------------------------------

    def write_tls(self):
        self.certificate = f"{self.work}/fleet.crt"
        self.key = f"{self.work}/fleet.key"
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.key, "-out", self.certificate, "-subj", "/CN=fleet.test", "-days", "2")
        self.ticket_keys = f"{self.work}/ticket.keys"
        run(self.ferry, "tls", "generate-ticket-key", "--prepend", self.ticket_keys)

    def host_config(self, host, port=TLS_PORT, health=HEALTH_PORT, shared_keys=True):
        directory = f"{self.work}/{host}-{port}"
        os.makedirs(f"{directory}/state", exist_ok=True)
        keys = f'ticket_keys = "{self.ticket_keys}"' if shared_keys else ""
        health_section = f'[health]\nlisten = "0.0.0.0:{health}"\ndrain_delay = "1s"\n' if health else ""
        config = f"""
[master]
workers = 1
standby_worker = false
control_socket = "{directory}/control.sock"
state_dir = "{directory}/state"
graceful_timeout = "5s"
access_log = "off"

[[listen]]
name = "https"
address = "0.0.0.0:{port}"
proxy_protocol = true
proxy_protocol_from = ["{BALANCER}/32"]
proxy_protocol_timeout = "500ms"
[listen.tls]
certificate = "{self.certificate}"
key = "{self.key}"
{keys}

[[backend]]
name = "app"
address = "{BACKEND}:{BACKEND_PORT}"

[[route]]
path = "/"
backend = "app"

{health_section}
"""
        path = f"{directory}/ferry.toml"
        with open(path, "w") as file:
            file.write(config)
        return path

    def start_host(self, host, port=TLS_PORT, health=HEALTH_PORT, shared_keys=True):
        config = self.host_config(host, port, health, shared_keys)
        log = f"{self.work}/{host}-{port}.log"
        self.logs[f"{host}:{port}"] = log
        process = self.spawn(f"ferry {host}:{port}", host, [self.ferry, "serve", "--config", config], log)
        if health:
            self.wait_ready(host, health)
        else:
            self.wait_port(host, HOSTS[host], port)
        return process

    def wait_ready(self, host, health=HEALTH_PORT, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.in_ns("lb", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1",
                                f"http://{HOSTS[host]}:{health}/ready")
            if answer.stdout == "200":
                return
            time.sleep(0.1)
        raise RuntimeError(f"{host} not ready within {timeout} s")

    def wait_port(self, namespace, address, port, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.in_ns(namespace, "python3", "-c",
                          f"import socket; socket.create_connection(('{address}', {port}), 1)").returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{address}:{port} not accepting within {timeout} s")

    def start_backend(self):
        script = f"{self.work}/backend.py"
        with open(script, "w") as file:
            file.write(BACKEND_SCRIPT)
        self.spawn("backend", "be", ["python3", script, BACKEND, str(BACKEND_PORT)], f"{self.work}/backend.log")
        self.wait_port("be", BACKEND, BACKEND_PORT)

    def start_balancer(self):
        self.haproxy_socket = f"{self.work}/haproxy.sock"
        servers = "\n".join(f"    server {host} {address}:{TLS_PORT}" for host, address in HOSTS.items())
        config = f"""
global
    maxconn 2000
    stats socket {self.haproxy_socket} mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend fleet
    bind {BALANCER}:443
    default_backend ferry
backend ferry
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready
    http-check expect status 200
    default-server check port {HEALTH_PORT} inter 200ms fall 1 rise 2 send-proxy-v2
{servers}
"""
        path = f"{self.work}/haproxy.cfg"
        with open(path, "w") as file:
            file.write(config)
        self.spawn("haproxy", "lb", ["haproxy", "-db", "-f", path], f"{self.work}/haproxy.log")
        self.wait_balancer({host: "UP" for host in HOSTS})

    def balancer_states(self):
        try:
            with socket.socket(socket.AF_UNIX) as control:
                control.settimeout(2)
                control.connect(self.haproxy_socket)
                control.sendall(b"show stat\n")
                data = b""
                while chunk := control.recv(65536):
                    data += chunk
        except OSError:
            return {}
        lines = data.decode().splitlines()
        if not lines:
            return {}
        fields = lines[0].lstrip("# ").split(",")
        states = {}
        for line in lines[1:]:
            row = dict(zip(fields, line.split(",")))
            if row.get("pxname") == "ferry" and row.get("svname") in HOSTS:
                states[row["svname"]] = row["status"].split(" ")[0]
        return states

    def wait_balancer(self, wanted, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.balancer_states()
            if all(states.get(host) == state for host, state in wanted.items()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"balancer did not reach {wanted}: {self.balancer_states()}")

    # -- scenarios ------------------------------------------------------------------------------

    def client_address_check(self):
        seen = []
        for _ in range(6):
            answer = self.in_ns("client", "curl", "-sk", "--max-time", "5", f"https://{BALANCER}/whoami")
            seen.append(json.loads(answer.stdout) if answer.returncode == 0 else {"error": answer.stderr})
        return seen

    def refusals(self):
        """A PROXY header from outside proxy_protocol_from, and a plain connection where the header
        is required; each beside the same connection done right."""
        header = proxy_v2(CLIENT, "192.0.2.1", 40000, TLS_PORT)
        h1 = HOSTS["h1"]
        code = "import socket,ssl,sys\n" + TLS_PROBE
        forged = self.in_ns("client", "python3", "-c", code, h1, str(TLS_PORT), header.hex(), timeout=20)
        direct = self.in_ns("client", "python3", "-c", code, h1, str(TLS_PORT), "", timeout=20)
        plain_from_balancer = self.in_ns("lb", "python3", "-c", code, h1, str(TLS_PORT), "", timeout=20)
        with_header_from_balancer = self.in_ns(
            "lb", "python3", "-c", code, h1, str(TLS_PORT), proxy_v2("198.51.100.7", h1, 1234, TLS_PORT).hex(),
            timeout=20)
        return {
            "forged_header_from_client": forged.stdout.strip(),
            "plain_from_client": direct.stdout.strip(),
            "plain_from_balancer": plain_from_balancer.stdout.strip(),
            "header_from_balancer": with_header_from_balancer.stdout.strip(),
        }

    def resumption(self):
        session = f"{self.work}/session"

        def s_client(address, port, option):
            command = (f"(printf 'GET / HTTP/1.1\\r\\nHost: fleet.test\\r\\n\\r\\n'; sleep 0.3) | "
                       f"openssl s_client -connect {address}:{port} {option} {session} 2>&1")
            output = self.in_ns("client", "sh", "-c", command, timeout=20).stdout
            return "Reused" if "\nReused, " in output else ("New" if "\nNew, " in output else "error")

        result = {}
        s_client(HOSTS["h1"], TLS_PORT, "-sess_out")
        result["h1_to_h2_shared_keys"] = s_client(HOSTS["h2"], TLS_PORT, "-sess_in")
        s_client(HOSTS["h2"], TLS_PORT, "-sess_out")
        result["h2_to_h3_shared_keys"] = s_client(HOSTS["h3"], TLS_PORT, "-sess_in")
        # The same hosts' certificate and config, but keys of its own (no ticket_keys file).
        own = self.start_host("h3", port=9443, health=None, shared_keys=False)
        s_client(HOSTS["h1"], TLS_PORT, "-sess_out")
        result["h1_to_h3_own_keys"] = s_client(HOSTS["h3"], 9443, "-sess_in")
        stop_process(own)
        return result

    def start_load(self, name, threads=8, max_seconds=60):
        stop_file = f"{self.work}/{name}.stop"
        output = f"{self.work}/{name}.json"
        process = self.spawn(
            f"load {name}", "client",
            ["python3", os.path.abspath(__file__), "load", BALANCER, "443", str(threads), stop_file, str(max_seconds)],
            output)
        return process, stop_file, output

    def finish_load(self, started):
        process, stop_file, output = started
        open(stop_file, "w").close()
        process.wait(timeout=30)
        with open(output) as file:
            return json.loads(file.read().strip().splitlines()[-1])

    def rolling_restart(self):
        load = self.start_load("rolling")
        time.sleep(1.5)
        steps = []
        for host in HOSTS:
            began = time.monotonic()
            master = self.masters[host]
            master.send_signal(signal.SIGTERM)
            self.wait_balancer({host: "DOWN"})
            marked_down = time.monotonic() - began
            master.wait(timeout=30)
            stopped = time.monotonic() - began
            self.masters[host] = self.start_host(host)
            self.wait_balancer({host: "UP"})
            steps.append({"host": host, "marked_down_s": round(marked_down, 3), "stopped_s": round(stopped, 3),
                          "back_in_rotation_s": round(time.monotonic() - began, 3)})
            self.note(f"rolling restart: {host} back")
            time.sleep(1)
        result = self.finish_load(load)
        result["steps"] = steps
        return result

    def host_kill(self):
        load = self.start_load("kill")
        time.sleep(1.5)
        victim = "h2"
        pids = process_tree(self.masters[victim].pid)
        killed_at = time.monotonic()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.masters[victim].wait(timeout=10)
        self.wait_balancer({victim: "DOWN"})
        marked_down = time.monotonic() - killed_at
        time.sleep(2)
        result = self.finish_load(load)
        result["killed_processes"] = len(pids)
        result["marked_down_s"] = round(marked_down, 3)
        result["threads"] = 8
        self.masters[victim] = self.start_host(victim)
        return result

    def proxy_battery(self):
        """Named PROXY headers from the balancer's address straight to h1, each followed by a TLS
        request when the header was accepted; then seeded random mutations. The worker must be the
        same process at the end and still serving."""
        h1 = HOSTS["h1"]
        workers_before = sorted(process_tree(self.masters["h1"].pid))
        valid = proxy_v2("203.0.113.9", h1, 5555, TLS_PORT)
        cases = {
            "v1 TCP4": (b"PROXY TCP4 203.0.113.9 10.77.0.11 5555 8443\r\n", "accepted"),
            "v1 TCP6": (b"PROXY TCP6 2001:db8::9 2001:db8::1 5555 8443\r\n", "accepted"),
            "v1 UNKNOWN": (b"PROXY UNKNOWN\r\n", "accepted"),
            "v2 TCP4": (valid, "accepted"),
            "v2 TCP4 with unknown TLVs": (proxy_v2("203.0.113.9", h1, 5555, TLS_PORT,
                                                    tlvs=b"\xe0\x00\x03abc\x30\x00\x00"), "accepted"),
            "v2 LOCAL": (V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0), "accepted"),
            "v2 UNSPEC": (V2_SIGNATURE + bytes([0x21, 0x00]) + struct.pack("!H", 0), "accepted"),
            "v2 truncated address block": (valid[:20], "refused"),
            "v2 length beyond the limit": (V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 60000), "refused"),
            "v2 wrong signature": (b"\r\n\r\n\x00\r\nQUIX\n" + valid[12:], "refused"),
            "v2 unknown command": (V2_SIGNATURE + bytes([0x2f, 0x11]) + valid[14:], "refused"),
            "v2 unknown family": (V2_SIGNATURE + bytes([0x21, 0x41]) + valid[14:], "refused"),
            "v2 TLV past the end": (proxy_v2("203.0.113.9", h1, 5555, TLS_PORT, tlvs=b"\xe0\x00\x09ab"), "refused"),
            "v1 bad address": (b"PROXY TCP4 203.0.113.999 10.77.0.11 5555 8443\r\n", "refused"),
            "v1 too long": (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", "refused"),
            "no header (TLS first)": (b"", "refused"),
        }
        named = {}
        for name, (header, expected) in cases.items():
            outcome = self.in_ns("lb", "python3", "-c", "import socket,ssl,sys\n" + TLS_PROBE, h1, str(TLS_PORT),
                                 header.hex(), timeout=20).stdout.strip()
            named[name] = {"expected": expected, "got": outcome}
        generator = random.Random(19)
        mutations = []
        for _ in range(150):
            data = bytearray(valid)
            for _ in range(generator.randint(1, 4)):
                position = generator.randrange(len(data))
                choice = generator.random()
                if choice < 0.6:
                    data[position] = generator.randrange(256)
                elif choice < 0.8:
                    del data[position:]
                    if not data:
                        data = bytearray(b"\r")
                else:
                    data[position:position] = bytes(generator.randrange(256) for _ in range(generator.randint(1, 8)))
            mutations.append(bytes(data).hex())
        script = f"{self.work}/mutations.py"
        with open(script, "w") as file:
            file.write("import socket,ssl,sys\n" + MUTATION_SENDER)
        fuzz = self.in_ns("lb", "python3", script, h1, str(TLS_PORT), *mutations, timeout=120)
        counts = json.loads(fuzz.stdout or "{}")
        after = self.in_ns("lb", "python3", "-c", "import socket,ssl,sys\n" + TLS_PROBE, h1, str(TLS_PORT),
                           valid.hex(), timeout=20).stdout.strip()
        return {
            "named": named,
            "mutations": counts,
            "served_after": after,
            "same_worker": sorted(process_tree(self.masters["h1"].pid)) == workers_before,
        }

    # -- all ------------------------------------------------------------------------------------

    def teardown(self):
        for name, process in reversed(self.processes):
            if process.poll() is None:
                for pid in process_tree(process.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        for namespace in self.namespaces:
            leftover = run("ip", "netns", "pids", namespace, check=False).stdout.split()
            for pid in leftover:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", namespace, check=False)


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(source, destination, source_port, destination_port, tlvs=b""):
    six = ":" in source
    family = socket.AF_INET6 if six else socket.AF_INET
    addresses = (socket.inet_pton(family, source) + socket.inet_pton(family, destination)
                 + struct.pack("!HH", source_port, destination_port))
    block = addresses + tlvs
    return V2_SIGNATURE + bytes([0x21, 0x21 if six else 0x11]) + struct.pack("!H", len(block)) + block


# Sends the header (hex, argv[3]) then tries a TLS request; prints accepted (200 answer) or refused.
TLS_PROBE = r"""
host, port, header = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    raw = socket.create_connection((host, port), timeout=3)
    raw.sendall(header)
    tls = context.wrap_socket(raw, server_hostname="fleet.test")
    tls.sendall(b"GET /probe HTTP/1.1\r\nHost: fleet.test\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := tls.recv(4096):
        data += chunk
    print("accepted" if data.startswith(b"HTTP/1.1 200") else "refused")
except (OSError, ssl.SSLError):
    print("refused")
"""

# Each mutated header (hex arguments) on its own connection, then a TLS attempt; counts outcomes.
MUTATION_SENDER = r"""
import json
host, port = sys.argv[1], int(sys.argv[2])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
counts = {"accepted": 0, "refused": 0}
for header in sys.argv[3:]:
    try:
        raw = socket.create_connection((host, port), timeout=2)
        raw.sendall(bytes.fromhex(header))
        tls = context.wrap_socket(raw, server_hostname="fleet.test")
        tls.sendall(b"GET /probe HTTP/1.1\r\nHost: fleet.test\r\nConnection: close\r\n\r\n")
        data = tls.recv(4096)
        counts["accepted" if data.startswith(b"HTTP/1.1 200") else "refused"] += 1
        tls.close()
    except (OSError, ssl.SSLError):
        counts["refused"] += 1
print(json.dumps(counts))
"""


def process_tree(root):
    """`root` and every descendant, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def stop_process(process):
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        for pid in process_tree(process.pid):
            os.kill(pid, signal.SIGKILL)


def main():
    if sys.argv[1] == "--can-run":
        sys.exit(0 if can_run() else 1)
    if sys.argv[1] == "load":
        load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]))
        return
    ferry, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(work, exist_ok=True)
    fleet = Fleet(ferry, work)
    report = {}
    # Bounded as a whole: whatever hangs, the fleet is torn down after this.
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("fleet test over 300 s")))
    signal.alarm(300)
    try:
        fleet.setup_network()
        fleet.write_tls()
        fleet.start_backend()
        for host in HOSTS:
            fleet.masters[host] = fleet.start_host(host)
        fleet.start_balancer()
        fleet.note("fleet up")
        report["client_address"] = fleet.client_address_check()
        report["refusals"] = fleet.refusals()
        report["resumption"] = fleet.resumption()
        report["rolling_restart"] = fleet.rolling_restart()
        report["host_kill"] = fleet.host_kill()
        report["proxy_battery"] = fleet.proxy_battery()
    except Exception as error:  # reported, the Swift test fails on it
        report["error"] = f"{type(error).__name__}: {error}"
    finally:
        signal.alarm(0)
        fleet.teardown()
        report["events"] = fleet.events
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
