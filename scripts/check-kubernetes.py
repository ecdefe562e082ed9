#!/usr/bin/env python3
"""Offline check of the Kubernetes manifests in deploy/kubernetes/ (run by `make test`).

Every YAML document under deploy/kubernetes/ is validated against the strict JSON schemas committed
in deploy/kubernetes/schemas/ (unknown fields are errors), then against Ferry's own invariants,
read from the ConfigMap's ferry.toml:

- the readiness, liveness and startup probes are HTTP GETs on the port [health] listen serves,
  readiness on /ready and liveness on /live;
- terminationGracePeriodSeconds > graceful_timeout + drain_delay;
- every [[listen]] port is a container port, and the Service's targetPorts are listener ports;
- ticket_keys, certificate and key lie under a mounted Secret volume that holds that file;
- control_socket and state_dir lie under writable emptyDir mounts; the preStop hook's
  `ferry stop --socket` names that control socket;
- the container reads the ConfigMap's ferry.toml through a directory mount (no subPath, so a
  changed ConfigMap reaches the file and `ferry reload` applies it);
- workers is a number no larger than the container's CPU request;
- the Service and PodDisruptionBudget select the Deployment's pods;
- the container runs as non-root with a read-only root filesystem and no capabilities;
- the Secret template holds no real-looking private key.

Usage: check-kubernetes.py              check the files; exit 1 on any error
       check-kubernetes.py --self-test  break copies of the documents in memory, one way at a time,
                                        and check that each is rejected
Needs only jsonschema (>= 4.18) and pyyaml; nothing is fetched.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import tomllib
from pathlib import Path

try:
    import jsonschema
    import referencing.exceptions
    import yaml
    from referencing import Registry, Resource
except ImportError as error:  # pragma: no cover - depends on the machine
    print(
        f"check-kubernetes: {error}: install jsonschema and pyyaml "
        "(`python3 -m pip install jsonschema pyyaml`; `make test` does)",
        file=sys.stderr,
    )
    sys.exit(2)

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "v1.33.0"
SCHEMAS = MANIFESTS / "schemas" / f"{KUBERNETES_VERSION}-local-strict"
CONFIG_KEY = "ferry.toml"


class Problem:
    def __init__(self, where: str, path: str, message: str):
        self.where, self.path, self.message = where, path, message

    def __str__(self) -> str:
        return f"{self.where}: {self.path or '(document)'}: {self.message}"


class Document:
    def __init__(self, file: Path, index: int, count: int, body: object):
        self.file, self.index, self.count, self.body = file, index, count, body

    @property
    def kind(self) -> str:
        return self.body.get("kind", "?") if isinstance(self.body, dict) else "?"

    @property
    def name(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("metadata"), dict):
            return str(self.body["metadata"].get("name", "?"))
        return "?"

    @property
    def where(self) -> str:
        relative = self.file.relative_to(ROOT)
        suffix = f" #{self.index + 1}" if self.count > 1 else ""
        return f"{relative}{suffix} ({self.kind}/{self.name})"


# MARK: - Loading


def load_documents() -> tuple[list[Document], list[Problem]]:
    documents, problems = [], []
    files = sorted(
        p
        for p in MANIFESTS.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file() and "schemas" not in p.relative_to(MANIFESTS).parts
    )
    if not files:
        problems.append(Problem(str(MANIFESTS.relative_to(ROOT)), "", "no YAML files"))
    for file in files:
        try:
            bodies = [b for b in yaml.safe_load_all(file.read_text()) if b is not None]
        except yaml.YAMLError as error:
            problems.append(Problem(str(file.relative_to(ROOT)), "", f"not valid YAML: {error}"))
            continue
        for index, body in enumerate(bodies):
            documents.append(Document(file, index, len(bodies), body))
    return documents, problems


_schema_cache: dict[str, object] = {}


def validator_for(body: dict):
    """The strict schema of the document's kind and apiVersion, with the committed definitions."""
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None, "apiVersion and kind must be strings"
    # As kubernetes-validate names them: apps/v1 -> apps-v1, policy/v1 -> policy-v1, v1 -> v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    name = f"{kind.lower()}-{group_version}.json"
    if name not in _schema_cache:
        path = SCHEMAS / name
        if not path.exists():
            return None, (
                f"no schema for {kind} {api_version} in {SCHEMAS.relative_to(ROOT)} "
                f"(add {name} and its definitions: see deploy/kubernetes/schemas/README.md)"
            )
        schema = json.loads(path.read_text())
        definitions = json.loads((SCHEMAS / "_definitions.json").read_text())
        registry = Registry().with_resources(
            [
                (schema["$id"], Resource.from_contents(schema)),
                (definitions["$id"], Resource.from_contents(definitions)),
            ]
        )
        _schema_cache[name] = jsonschema.Draft202012Validator(schema, registry=registry)
    return _schema_cache[name], None


def json_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_problems(document: Document) -> list[Problem]:
    if not isinstance(document.body, dict):
        return [Problem(document.where, "", "a Kubernetes object must be a mapping")]
    validator, error = validator_for(document.body)
    if error:
        return [Problem(document.where, "", error)]
    problems = []
    try:
        failures = sorted(validator.iter_errors(document.body), key=lambda e: list(map(str, e.absolute_path)))
    except referencing.exceptions.Unresolvable as error:
        return [Problem(document.where, "", f"the committed schemas are incomplete: {error}")]
    for failure in failures:
        message = failure.message
        if failure.context:  # oneOf / anyOf: say which alternatives failed
            message += " (" + "; ".join(sorted({c.message for c in failure.context})) + ")"
        problems.append(Problem(document.where, json_path(failure.absolute_path), message))
    return problems


# MARK: - Ferry's invariants

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")


def seconds(value: str) -> float:
    match = DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def port_of(address: str) -> int | None:
    """The port of "host:port" or "[v6]:port"; None for "systemd:NAME"."""
    if address.startswith("systemd:"):
        return None
    match = re.match(r"^(?:\[[^\]]*\]|[^:\[\]]*):(\d+)$", address)
    if not match:
        raise ValueError(f"not host:port: {address!r}")
    return int(match.group(1))


def cpu_cores(quantity) -> float | None:
    if quantity is None:
        return None
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def under(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def invariant_problems(documents: list[Document]) -> list[Problem]:
    problems: list[Problem] = []
    by_kind: dict[str, list[Document]] = {}
    for document in documents:
        if isinstance(document.body, dict):
            by_kind.setdefault(document.kind, []).append(document)

    def need_one(kind: str) -> Document | None:
        found = by_kind.get(kind, [])
        if len(found) != 1:
            problems.append(
                Problem(str(MANIFESTS.relative_to(ROOT)), "", f"expected exactly one {kind}, found {len(found)}")
            )
            return None
        return found[0]

    configmap, deployment = need_one("ConfigMap"), need_one("Deployment")
    service, budget, secret = need_one("Service"), need_one("PodDisruptionBudget"), need_one("Secret")
    if configmap is None or deployment is None:
        return problems

    # The configuration, as ferry will read it.
    text = (configmap.body.get("data") or {}).get(CONFIG_KEY)
    if not isinstance(text, str):
        return problems + [Problem(configmap.where, f"data.{CONFIG_KEY}", "missing: the ConfigMap holds ferry.toml")]
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return problems + [Problem(configmap.where, f"data.{CONFIG_KEY}", f"not valid TOML: {error}")]
    master = config.get("master", {})
    health = config.get("health")
    listeners = config.get("listen", [])

    def bad(document, path, message):
        problems.append(Problem(document.where, path, message))

    pod_path = "spec.template.spec"
    pod = (((deployment.body.get("spec") or {}).get("template") or {}).get("spec")) or {}
    containers = pod.get("containers") or []
    index = next((i for i, c in enumerate(containers) if c.get("name") == "ferry"), 0 if containers else None)
    if index is None:
        bad(deployment, f"{pod_path}.containers", "no container")
        return problems
    container = containers[index]
    cpath = f"{pod_path}.containers[{index}]"
    named_ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or [] if p.get("name")}
    container_ports = {p.get("containerPort") for p in container.get("ports") or []}

    def resolve(port):
        return named_ports.get(port) if isinstance(port, str) else port

    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = container.get("volumeMounts") or []

    def mount_holding(path: str):
        """The deepest volume mount whose directory contains path."""
        candidates = [m for m in mounts if under(path, m.get("mountPath", ""))]
        return max(candidates, key=lambda m: len(m["mountPath"]), default=None)

    # Probes against [health] listen.
    if not isinstance(health, dict) or "listen" not in health:
        bad(configmap, f"data.{CONFIG_KEY}", "[health] listen is not set: the probes need /ready and /live")
    else:
        health_port = port_of(health["listen"])
        if health_port not in container_ports:
            bad(deployment, f"{cpath}.ports", f"no containerPort {health_port} ([health] listen = {health['listen']!r})")
        wanted = {"readinessProbe": "/ready", "livenessProbe": "/live", "startupProbe": None}
        for probe_name, wanted_path in wanted.items():
            probe = container.get(probe_name)
            if probe is None:
                if probe_name != "startupProbe":
                    bad(deployment, f"{cpath}.{probe_name}", f"missing (httpGet {wanted_path} on port {health_port})")
                continue
            get = probe.get("httpGet")
            if not isinstance(get, dict):
                bad(deployment, f"{cpath}.{probe_name}", "must be an httpGet on the [health] listener")
                continue
            port = resolve(get.get("port"))
            if port != health_port:
                bad(
                    deployment,
                    f"{cpath}.{probe_name}.httpGet.port",
                    f"{get.get('port')!r}{f' (port {port})' if isinstance(get.get('port'), str) else ''}"
                    f" is not the port [health] listen = {health['listen']!r} serves ({health_port})",
                )
            if wanted_path and get.get("path") != wanted_path:
                bad(deployment, f"{cpath}.{probe_name}.httpGet.path", f"{get.get('path')!r}: must be {wanted_path}")
            if probe_name == "startupProbe" and get.get("path") not in ("/ready", "/live"):
                bad(deployment, f"{cpath}.{probe_name}.httpGet.path", "must be /live or /ready")
            if (get.get("scheme") or "HTTP") != "HTTP":
                bad(deployment, f"{cpath}.{probe_name}.httpGet.scheme", "the health listener speaks plain HTTP")

    # The grace period against the stop's own deadlines.
    try:
        graceful = seconds(master.get("graceful_timeout", "30s"))
        delay = seconds(health.get("drain_delay", "0s")) if isinstance(health, dict) else 0.0
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if not isinstance(grace, int) or grace <= graceful + delay:
            bad(
                deployment,
                f"{pod_path}.terminationGracePeriodSeconds",
                f"{grace} must be greater than graceful_timeout ({graceful:g}s) + drain_delay ({delay:g}s) = "
                f"{graceful + delay:g}s, or the kubelet kills the pod mid-drain",
            )
    except ValueError as error:
        bad(configmap, f"data.{CONFIG_KEY}", str(error))

    # Listener ports, container ports and the Service.
    listener_ports = set()
    if not listeners:
        bad(configmap, f"data.{CONFIG_KEY}", "no [[listen]]")
    for i, listener in enumerate(listeners):
        try:
            port = port_of(listener.get("address", ""))
        except ValueError as error:
            bad(configmap, f"data.{CONFIG_KEY}: listen[{i}].address", str(error))
            continue
        if port is None:
            bad(configmap, f"data.{CONFIG_KEY}: listen[{i}].address", "systemd socket activation does not exist in a pod")
            continue
        listener_ports.add(port)
        if port not in container_ports:
            bad(deployment, f"{cpath}.ports", f"no containerPort {port} for listener {listener.get('address')!r}")
    if service is not None:
        for i, sp in enumerate((service.body.get("spec") or {}).get("ports") or []):
            target = sp.get("targetPort", sp.get("port"))
            port = resolve(target)
            if port not in listener_ports:
                bad(
                    service,
                    f"spec.ports[{i}].targetPort",
                    f"{target!r}{f' (port {port})' if isinstance(target, str) else ''} is not a port"
                    f" ferry.toml listens on {sorted(listener_ports)}",
                )

    # TLS files under a mounted Secret that has them.
    secrets = {d.name: d for d in by_kind.get("Secret", [])}
    for i, listener in enumerate(listeners):
        tls = listener.get("tls") or {}
        for key in ("certificate", "key", "ticket_keys"):
            path = tls.get(key)
            if path is None:
                continue
            where = f"data.{CONFIG_KEY}: listen[{i}].tls.{key}"
            mount = mount_holding(path)
            volume = volumes.get(mount.get("name")) if mount else None
            if not volume or "secret" not in volume:
                bad(configmap, where, f"{path!r} is not under a mounted Secret volume")
                continue
            if mount.get("subPath"):
                bad(deployment, f"{cpath}.volumeMounts", f"{mount['name']}: subPath mounts never see Secret updates")
            file = path[len(mount["mountPath"].rstrip("/")) + 1 :]
            source = volume["secret"]
            items = {item.get("path"): item.get("key") for item in source.get("items") or []}
            secret_key = items.get(file, file if not items else None)
            held = secrets.get(source.get("secretName"))
            if held is None:
                bad(configmap, where, f"Secret {source.get('secretName')!r} (volume {volume['name']!r}) is not in the manifests")
            else:
                keys = set((held.body.get("data") or {})) | set((held.body.get("stringData") or {}))
                if secret_key not in keys:
                    bad(configmap, where, f"{path!r}: Secret {held.name!r} has no key {secret_key or file!r}")

    # Writable runtime paths: the control socket and the state directory.
    for key, default in (("control_socket", "/run/ferry/control.sock"), ("state_dir", "/var/lib/ferry")):
        path = master.get(key, default)
        probe = path if key == "control_socket" else path.rstrip("/") + "/x"
        mount = mount_holding(probe)
        volume = volumes.get(mount.get("name")) if mount else None
        if not volume or "emptyDir" not in volume or mount.get("readOnly"):
            bad(configmap, f"data.{CONFIG_KEY}: master.{key}", f"{path!r} is not on a writable emptyDir mount")

    # preStop: `ferry stop` on the configured control socket.
    pre_stop = ((container.get("lifecycle") or {}).get("preStop")) or {}
    command = (pre_stop.get("exec") or {}).get("command") or []
    if not command:
        bad(deployment, f"{cpath}.lifecycle.preStop", "missing: the drain should start with `ferry stop`")
    elif "stop" in command:
        socket = command[command.index("--socket") + 1] if "--socket" in command[:-1] else None
        if socket != master.get("control_socket", "/run/ferry/control.sock"):
            bad(
                deployment,
                f"{cpath}.lifecycle.preStop.exec.command",
                f"--socket {socket!r} is not control_socket {master.get('control_socket')!r}",
            )

    # The container reads the ConfigMap's ferry.toml through a directory mount.
    args = (container.get("command") or []) + (container.get("args") or [])
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    if config_path is None:
        bad(deployment, f"{cpath}.args", "no --config: the embedded default would run instead of the ConfigMap")
    else:
        mount = mount_holding(config_path)
        volume = volumes.get(mount.get("name")) if mount else None
        if (
            not volume
            or (volume.get("configMap") or {}).get("name") != configmap.name
            or config_path != mount["mountPath"].rstrip("/") + "/" + CONFIG_KEY
        ):
            bad(deployment, f"{cpath}.args", f"--config {config_path} is not {CONFIG_KEY} of ConfigMap {configmap.name!r}")
        elif mount.get("subPath"):
            bad(deployment, f"{cpath}.volumeMounts", "the ConfigMap is mounted with subPath: updates never reach it")

    # Workers against the CPU request.
    workers = master.get("workers", "auto")
    request = cpu_cores(((container.get("resources") or {}).get("requests") or {}).get("cpu"))
    if not isinstance(workers, int):
        bad(configmap, f"data.{CONFIG_KEY}: master.workers", f"{workers!r}: set a number (\"auto\" counts the node's cores)")
    elif request is None:
        bad(deployment, f"{cpath}.resources.requests.cpu", "missing")
    elif workers > max(1, request):
        bad(configmap, f"data.{CONFIG_KEY}: master.workers", f"{workers} workers on a request of {request:g} CPU")

    # Selectors.
    labels = ((deployment.body.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    for document, path, selector in (
        (service, "spec.selector", ((service.body.get("spec") or {}).get("selector")) if service else None),
        (budget, "spec.selector.matchLabels", (((budget.body.get("spec") or {}).get("selector") or {}).get("matchLabels")) if budget else None),
    ):
        if document is None:
            continue
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            bad(document, path, f"{selector!r} does not select the Deployment's pods {labels!r}")

    # Security context: non-root, read-only root filesystem, no capabilities.
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}
    if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
        bad(deployment, f"{cpath}.securityContext.runAsNonRoot", "must be true")
    if security.get("readOnlyRootFilesystem") is not True:
        bad(deployment, f"{cpath}.securityContext.readOnlyRootFilesystem", "must be true")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        bad(deployment, f"{cpath}.securityContext.capabilities.drop", "must drop ALL")
    if security.get("allowPrivilegeEscalation") is not False:
        bad(deployment, f"{cpath}.securityContext.allowPrivilegeEscalation", "must be false")

    # The Secret is a template: nothing that looks like a real key.
    if secret is not None:
        real = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=\s]{64,}-----END")
        for section in ("data", "stringData"):
            for key, value in (secret.body.get(section) or {}).items():
                if isinstance(value, str) and real.search(value):
                    bad(secret, f"{section}.{key}", "looks like a real private key: keep placeholders in the repository")

    return problems


def check(documents: list[Document]) -> tuple[dict[Path, list[Problem]], list[Problem]]:
    """Schema problems per file, and the invariant problems."""
    per_file: dict[Path, list[Problem]] = {}
    for document in documents:
        per_file.setdefault(document.file, []).extend(schema_problems(document))
    return per_file, invariant_problems(documents)


# MARK: - Modes


def main_check() -> int:
    documents, problems = load_documents()
    per_file, invariants = check(documents)
    failures = len(problems) + len(invariants)
    for problem in problems:
        print(f"FAIL {problem}")
    for file in sorted(per_file):
        kinds = ", ".join(f"{d.kind}/{d.name}" for d in documents if d.file == file)
        if per_file[file]:
            failures += len(per_file[file])
            for problem in per_file[file]:
                print(f"FAIL {problem}")
        else:
            print(f"OK   {file.relative_to(ROOT)} ({kinds}) against Kubernetes {KUBERNETES_VERSION} strict schemas")
    for problem in invariants:
        print(f"FAIL {problem}")
    if not invariants and documents:
        print("OK   invariants: probes, ports, grace period, TLS files, runtime paths, preStop, selectors, security")
    if failures:
        print(f"check-kubernetes: {failures} problem(s)")
        return 1
    print(f"check-kubernetes: {len(documents)} documents in {len(per_file)} files OK")
    return 0


def find(documents: list[Document], kind: str) -> dict:
    return next(d.body for d in documents if d.kind == kind)


def container_of(documents: list[Document]) -> dict:
    return find(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def edit_config(documents, old: str, new: str):
    data = find(documents, "ConfigMap")["data"]
    assert old in data[CONFIG_KEY], f"self-test: {old!r} not in ferry.toml"
    data[CONFIG_KEY] = data[CONFIG_KEY].replace(old, new)


# (name, mutation, a text the rejection must contain)
MUTATIONS = [
    ("unknown field in the Deployment spec", lambda d: find(d, "Deployment")["spec"].update(replicaCount=3), "Additional properties are not allowed ('replicaCount'"),
    ("unknown field deep in the container", lambda d: container_of(d)["securityContext"].update(readOnlyRootFS=True), "'readOnlyRootFS' was unexpected"),
    ("unknown top-level field in the Service", lambda d: find(d, "Service").update(specs={}), "'specs' was unexpected"),
    ("wrong type: replicas as a string", lambda d: find(d, "Deployment")["spec"].update(replicas="three"), "'three' is not of type 'integer'"),
    ("wrong type: containerPort as a string", lambda d: container_of(d)["ports"][0].update(containerPort="8443"), "'8443' is not of type 'integer'"),
    ("wrong type: ConfigMap data value not a string", lambda d: find(d, "ConfigMap")["data"].update(workers=2), "2 is not of type 'string'"),
    ("grace period too short (equal to graceful_timeout + drain_delay)", lambda d: find(d, "Deployment")["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=35), "must be greater than graceful_timeout"),
    ("drain_delay raised above what the grace period covers", lambda d: edit_config(d, 'drain_delay = "5s"', 'drain_delay = "25s"'), "must be greater than graceful_timeout"),
    ("readiness probe on the wrong port", lambda d: container_of(d)["readinessProbe"]["httpGet"].update(port=8081), "readinessProbe.httpGet.port"),
    ("liveness probe on the HTTPS port", lambda d: container_of(d)["livenessProbe"]["httpGet"].update(port="https"), "livenessProbe.httpGet.port"),
    ("[health] listen moved away from the probes", lambda d: edit_config(d, 'listen = "0.0.0.0:8080"', 'listen = "0.0.0.0:9090"'), "serves (9090)"),
    ("liveness probe on the wrong path", lambda d: container_of(d)["livenessProbe"]["httpGet"].update(path="/healthz"), "must be /live"),
    ("listener port differs from the container port", lambda d: edit_config(d, 'address = "0.0.0.0:8443"', 'address = "0.0.0.0:9443"'), "no containerPort 9443"),
    ("Service targetPort not a listener", lambda d: find(d, "Service")["spec"]["ports"][0].update(targetPort=8080), "targetPort"),
    ("ticket_keys outside the Secret mount", lambda d: edit_config(d, 'ticket_keys = "/etc/ferry/tls/ticket.keys"', 'ticket_keys = "/etc/ferry/ticket.keys"'), "not under a mounted Secret volume"),
    ("ticket_keys names a file the Secret lacks", lambda d: find(d, "Secret")["stringData"].pop("ticket.keys"), "has no key 'ticket.keys'"),
    ("control socket on the read-only root filesystem", lambda d: edit_config(d, 'control_socket = "/run/ferry/control.sock"', 'control_socket = "/etc/ferry/control.sock"'), "master.control_socket"),
    ("ConfigMap mounted with subPath", lambda d: container_of(d)["volumeMounts"][0].update(subPath="ferry.toml"), "subPath"),
    ("workers = \"auto\"", lambda d: edit_config(d, "workers = 2 ", 'workers = "auto" '), "master.workers"),
    ("PDB selects other pods", lambda d: find(d, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "other"}), "does not select"),
    ("capabilities not dropped", lambda d: container_of(d)["securityContext"]["capabilities"].update(drop=[]), "must drop ALL"),
    ("a real-looking private key in the Secret", lambda d: find(d, "Secret")["stringData"].update({"tls.key": "-----BEGIN PRIVATE KEY-----\n" + "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg" * 3 + "\n-----END PRIVATE KEY-----\n"}), "looks like a real private key"),
]


def main_self_test() -> int:
    documents, problems = load_documents()
    per_file, invariants = check(documents)
    baseline = problems + invariants + [p for ps in per_file.values() for p in ps]
    if baseline:
        for problem in baseline:
            print(f"FAIL {problem}")
        print("self-test: the committed manifests must pass first")
        return 1
    failed = 0
    for name, mutate, expected in MUTATIONS:
        mutated = [Document(d.file, d.index, d.count, copy.deepcopy(d.body)) for d in documents]
        mutate(mutated)
        per_file, invariants = check(mutated)
        found = [str(p) for p in invariants + [p for ps in per_file.values() for p in ps]]
        matching = [p for p in found if expected in p]
        if matching:
            print(f"ok   rejected: {name}\n       {matching[0]}")
        else:
            failed += 1
            print(f"FAIL not rejected as expected: {name} (wanted {expected!r}; got {found or 'no error'})")
    # The mutations worked on copies: the files themselves still pass.
    documents_again, _ = load_documents()
    if any(check(documents_again)[1]) or any(p for ps in check(documents_again)[0].values() for p in ps):
        print("FAIL the committed manifests changed during the self-test")
        failed += 1
    print(f"self-test: {len(MUTATIONS) - failed} of {len(MUTATIONS)} breakages rejected")
    return 1 if failed else 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments == ["--self-test"]:
        sys.exit(main_self_test())
    if arguments:
        print("usage: check-kubernetes.py [--self-test]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main_check())
