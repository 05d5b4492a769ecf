"""Offline validation of Herald's deployment files; run by scripts/lint-deploy.sh.

Needs the tools that scripts/deploy-tools.sh installs (.tools/venv). Prints one
line per problem and exits 1 if there is any.

  scripts/lint-deploy.sh --write-prometheusrule
      rewrites k8s/components/monitoring/prometheusrule.yaml from
      deploy/prometheus/alerts.yml (the lint fails while the two differ).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import posixpath
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import promql_parser
import kubernetes_validate.utils
import yaml

# libyaml when the wheel has it; and parse each Kubernetes schema file once
# (kubernetes-validate reads it again for every object otherwise).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)

ROOT = Path(__file__).resolve().parent.parent
# The oldest Kubernetes Herald supports (preStop `sleep` handler) and a recent one.
K8S_VERSIONS = os.environ.get("HERALD_K8S_VERSIONS", "1.30.0,1.34.0").split(",")
NAMESPACE = "herald"
KUSTOMIZE_DIRS = ["k8s/base", "k8s/overlays/dev", "k8s/overlays/production"]
# Custom resources: no Kubernetes schema ships them, so they are checked
# against the hand-written schemas of deploy/schemas (see its README).
CRD_SCHEMAS = {
    ("keda.sh", "ScaledObject"): "deploy/schemas/keda-scaledobject.json",
    ("keda.sh", "TriggerAuthentication"): "deploy/schemas/keda-triggerauthentication.json",
    ("monitoring.coreos.com", "PodMonitor"): "deploy/schemas/monitoring-podmonitor.json",
    ("monitoring.coreos.com", "PrometheusRule"): "deploy/schemas/monitoring-prometheusrule.json",
}
SERVICES = ("ingest-api", "stream-worker", "ws-gateway")
SECRET = "herald-secrets"
PRESTOP_SECONDS = 5
# Longest drain after SIGTERM, per service (docs/operations.md#shutdown-and-drain).
DRAIN_SECONDS = {"ingest-api": 30, "stream-worker": 10, "ws-gateway": 10}
STREAM_PREFIX = "herald:{notifications}:"
PRIORITIES = ("high", "normal", "low")
# Who owns each Deployment's replica count.
HPA_TARGETS = {"ingest-api"}
SCALEDOBJECT_TARGETS = {"stream-worker", "ws-gateway"}
# What the Ingress routes (service -> paths that must be there), and what it never may.
INGRESS_ROUTES = {"ingest-api": ("/v1/notifications",), "ws-gateway": ("/v1/ws", "/v1/me")}
NEVER_ROUTED = ("/metrics", "/v1/admin", "/healthz", "/readyz")
NGINX = "nginx.ingress.kubernetes.io/"
# A WebSocket lives for hours; the gateway pings every 20 s, but an idle
# proxy timeout shorter than a client's silence would cut it.
WS_TIMEOUT_SECONDS = 3600
ALERTS = "deploy/prometheus/alerts.yml"
PROMETHEUSRULE = "k8s/components/monitoring/prometheusrule.yaml"
CONNECTIONS_METRIC = "herald_gateway_connections"

errors: list[str] = []


def fail(where: str, msg: str) -> None:
    errors.append(f"{where}: {msg}")


def herald_defaults() -> dict:
    """config/default.toml: the settings every binary starts from."""
    return tomllib.loads((ROOT / "config/default.toml").read_text())


# ---------------------------------------------------------------- Kubernetes


def render(path: str) -> list[dict]:
    proc = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        fail(path, "kubectl kustomize failed: " + proc.stderr.strip())
        return []
    return [d for d in yaml.load_all(proc.stdout, Loader=YAML_LOADER) if d]


def obj_name(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_schema(where: str, doc: dict, crd_validators: dict) -> None:
    api = str(doc.get("apiVersion", ""))
    kind = doc.get("kind")
    group = api.split("/", 1)[0] if "/" in api else ""
    if group in {g for g, _ in CRD_SCHEMAS}:
        validator = crd_validators.get((group, kind))
        if validator is None:
            fail(where, f"no vendored schema for {group} kind {kind}")
            return
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in err.absolute_path) or "(root)"
            fail(where, f"{group} schema: {path}: {err.message}")
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = "/".join(str(p) for p in err.path) or "(root)"
            fail(where, f"Kubernetes {version} schema (strict): {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            fail(where, f"no Kubernetes {version} schema for {api} {kind} (typo in apiVersion/kind?)")


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "Job"):
        return doc.get("spec", {}).get("template", {}).get("spec", {})
    return None


def check_security(where: str, spec: dict) -> None:
    psc = spec.get("securityContext", {})
    for key, want in (("runAsNonRoot", True), ("runAsUser", 65532)):
        if psc.get(key) != want:
            fail(where, f"pod securityContext.{key} must be {want!r}")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken must be false")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        csc = c.get("securityContext", {})
        cw = f"{where} container {c.get('name')}"
        for key, want in (
            ("runAsNonRoot", True),
            ("runAsUser", 65532),
            ("readOnlyRootFilesystem", True),
            ("allowPrivilegeEscalation", False),
        ):
            if csc.get(key) != want:
                fail(cw, f"securityContext.{key} must be {want!r}")
        if csc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(cw, "securityContext.capabilities.drop must be [ALL]")
        if csc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(cw, "securityContext.seccompProfile.type must be RuntimeDefault")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    fail(cw, f"resources.{part}.{r} missing")
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref.get("name") != SECRET:
                fail(cw, f"env {env.get('name')} reads Secret {ref.get('name')}, expected {SECRET}")
        for name in ("HERALD__DATABASE__URL", "HERALD__REDIS__URL", "HERALD__AUTH__JWT_SECRET"):
            for env in c.get("env", []):
                if env.get("name") == name and "value" in env:
                    fail(cw, f"{name} must come from secretKeyRef, not a literal value")


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", []) if "name" in e}


def effective_env(container: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    """The literal environment a container starts with: its ConfigMaps
    (envFrom, in order), then its own `value` entries, which win."""
    out: dict[str, str] = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef", {}).get("name")
        if ref is not None:
            prefix = src.get("prefix", "")
            out.update({prefix + k: str(v) for k, v in configmaps.get(ref, {}).get("data", {}).items()})
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = str(e["value"])
        else:
            out.pop(e.get("name"), None)
    return out


def container_ports(container: dict) -> dict[str, int]:
    return {p["name"]: p.get("containerPort") for p in container.get("ports", []) if "name" in p}


def check_deployment(where: str, doc: dict, overlay: str, configmaps: dict[str, dict]) -> None:
    name = doc["metadata"]["name"]
    spec = pod_spec(doc) or {}
    check_security(where, spec)
    containers = spec.get("containers", [])
    if len(containers) != 1:
        fail(where, "expected exactly one container")
        return
    c = containers[0]
    probes = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in probes.items():
        got = c.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            fail(where, f"{probe} must be httpGet {path} (got {got})")
    # Two ports: `http` (API, WebSocket) and `admin` (/metrics, /v1/admin/*),
    # each matching the setting the binary reads (docs/operations.md#ports).
    ports = container_ports(c)
    values = effective_env(c, configmaps)
    if ports.get("http") != 8080:
        fail(where, "container must expose 8080 as port named http")
    if not isinstance(ports.get("admin"), int):
        fail(where, "container must expose a port named admin (/metrics, /v1/admin/*)")
    elif ports["admin"] == ports.get("http"):
        fail(where, "ports http and admin must differ")
    for setting, port in (("HERALD__HTTP__PORT", "http"), ("HERALD__HTTP__ADMIN_PORT", "admin")):
        if port in ports and values.get(setting) != str(ports[port]):
            fail(where, f"{setting} must be {ports[port]} (containerPort `{port}`), got {values.get(setting)!r}")
    # Scraping goes through the PodMonitor on `admin`; an annotation pointing
    # elsewhere would have an annotation-based Prometheus scrape a port that
    # serves no /metrics.
    ann = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {}) or {}
    if "prometheus.io/port" in ann and ann["prometheus.io/port"] not in (str(ports.get("admin")), "admin"):
        fail(where, f"annotation prometheus.io/port {ann['prometheus.io/port']} is not the admin port")
    pre = c.get("lifecycle", {}).get("preStop", {})
    if "exec" in pre:
        fail(where, "preStop exec cannot work: the image has no shell; use preStop.sleep")
    sleep = pre.get("sleep", {}).get("seconds")
    if sleep is None:
        fail(where, "preStop.sleep.seconds missing")
        sleep = 0
    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = DRAIN_SECONDS.get(name, 0)
    if grace <= sleep + drain:
        fail(where, f"terminationGracePeriodSeconds {grace} must exceed preStop {sleep} s + drain {drain} s")
    env = env_of(c)
    if env.get("OTEL_SERVICE_NAME", {}).get("value") != name:
        fail(where, f"OTEL_SERVICE_NAME must be {name}")
    if not c.get("envFrom"):
        fail(where, "non-secret settings must come from the ConfigMap (envFrom)")
    for key in ("HERALD__DATABASE__URL", "HERALD__REDIS__URL"):
        if "secretKeyRef" not in env.get(key, {}).get("valueFrom", {}):
            fail(where, f"{key} must come from secretKeyRef")
    if name == "ws-gateway" and "secretKeyRef" not in env.get("HERALD__AUTH__JWT_SECRET", {}).get("valueFrom", {}):
        fail(where, "HERALD__AUTH__JWT_SECRET must come from secretKeyRef")
    if name == "stream-worker":
        ref = env.get("HERALD__WORKER__CONSUMER_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
        if ref.get("fieldPath") != "metadata.name":
            fail(where, "HERALD__WORKER__CONSUMER_NAME must come from fieldRef metadata.name")
    if name == "ingest-api" and env.get("HERALD__TEMPLATES__DIR", {}).get("value") != "/app/templates":
        fail(where, "HERALD__TEMPLATES__DIR must be /app/templates")
    # Every Deployment is owned by an autoscaler (checked in check_objects):
    # a replica count here would reset it on every `kubectl apply`.
    if "replicas" in doc.get("spec", {}):
        fail(where, "no spec.replicas on an autoscaled Deployment (the HPA / ScaledObject owns it)")


def check_migrate_job(where: str, job: dict) -> None:
    """The Job migrates over the direct URL when the Secret has one."""
    spec = pod_spec(job) or {}
    check_security(where, spec)
    c = (spec.get("containers") or [{}])[0]
    if c.get("args") != ["migrate"]:
        return
    ref = env_of(c).get("HERALD__DATABASE__MIGRATION_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if ref.get("name") != SECRET or ref.get("key") != "migration-url":
        fail(where, f"HERALD__DATABASE__MIGRATION_URL must come from secretKeyRef {SECRET}/migration-url")


def check_redis_trigger(where: str, trig: dict) -> None:
    md = trig.get("metadata", {})
    tw = f"{where} trigger {trig.get('name')}"
    stream = md.get("stream", "")
    if not stream.startswith(STREAM_PREFIX) or stream[len(STREAM_PREFIX):] not in PRIORITIES:
        fail(tw, f"stream {stream!r} is not one of {STREAM_PREFIX}{{{','.join(PRIORITIES)}}}")
    if md.get("consumerGroup") != "stream-worker":
        fail(tw, "consumerGroup must be stream-worker")
    modes = [k for k in ("pendingEntriesCount", "lagCount", "streamLength") if k in md]
    if len(modes) != 1:
        fail(tw, f"exactly one of pendingEntriesCount/lagCount/streamLength, got {modes}")
    for k in modes:
        if not md[k].isdigit():
            fail(tw, f"{k} must be a positive integer string")
    # KEDA 2.12-2.14 reject lagCount unless activationLagCount is set too.
    if "lagCount" in md and md.get("activationLagCount") != "0":
        fail(tw, 'lagCount needs activationLagCount: "0" (KEDA 2.12-2.14 reject it otherwise)')
    if not ("address" in md or "addressFromEnv" in md or "authenticationRef" in trig):
        fail(tw, "no Redis address (metadata address/addressFromEnv or authenticationRef)")


def number(text: object) -> float | None:
    try:
        return float(str(text))
    except ValueError:
        return None


def check_gateway_scaledobject(where: str, so: dict, max_connections: int | None,
                               known: set[str]) -> None:
    """ws-gateway scales on open sockets (Prometheus) and CPU, slowly down."""
    triggers = so["spec"].get("triggers", [])
    prom = [t for t in triggers if t.get("type") == "prometheus"
            and CONNECTIONS_METRIC in t.get("metadata", {}).get("query", "")]
    if len(prom) != 1:
        fail(where, f"needs exactly one prometheus trigger whose query uses {CONNECTIONS_METRIC}")
    for t in prom:
        md, tw = t.get("metadata", {}), f"{where} trigger {t.get('name')}"
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", md.get("serverAddress", "")):
            fail(tw, "serverAddress must be the Prometheus server's http(s) URL")
        check_expr(tw, md.get("query", ""), known)
        if t.get("metricType", "AverageValue") != "AverageValue":
            fail(tw, "metricType must be AverageValue (threshold = sockets per pod)")
        threshold = number(md.get("threshold"))
        if threshold is None or threshold <= 0:
            fail(tw, f"threshold {md.get('threshold')!r} must be a positive number")
        elif max_connections is not None:
            if max_connections <= 0:
                fail(where, "the gateway's HERALD__GATEWAY__MAX_CONNECTIONS must be > 0 where the "
                            "autoscaler aims at a number of sockets per pod")
            elif threshold >= max_connections:
                fail(tw, f"threshold {md['threshold']} must be below HERALD__GATEWAY__MAX_CONNECTIONS "
                         f"{max_connections}, or pods refuse upgrades before the autoscaler adds one")
    cpu = [t for t in triggers if t.get("type") == "cpu"]
    if len(cpu) != 1 or cpu[0].get("metricType") != "Utilization" or number(cpu[0].get("metadata", {}).get("value")) is None:
        fail(where, 'needs one cpu trigger with metricType Utilization and metadata.value (e.g. "70")')
    down = so["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}).get("scaleDown", {})
    policies = down.get("policies", [])
    if down.get("stabilizationWindowSeconds", 0) < 300 or not policies or any(
            p.get("type") != "Pods" or p.get("value") != 1 for p in policies):
        fail(where, "scale down slowly (removing a gateway disconnects its clients): "
                    "stabilizationWindowSeconds >= 300 and only `Pods: 1` policies")


def selector_matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector against an object's labels; an empty selector matches all."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_network_policies(path: str, policies: list[dict], deployments: list[dict]) -> None:
    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):
        fail(path, "no default-deny NetworkPolicy (ingress+egress) in the namespace")
    egress_ports = {
        (port.get("protocol", "TCP"), port.get("port"))
        for p in policies for rule in p["spec"].get("egress", []) for port in rule.get("ports", [])
    }
    for need in (("TCP", 5432), ("TCP", 6379), ("UDP", 53), ("TCP", 53), ("TCP", 4317), ("TCP", 4318)):
        if need not in egress_ports:
            fail(path, f"no NetworkPolicy allows egress {need[0]}/{need[1]}")
    # Ingress by port: `admin` only from other namespaces by namespaceSelector
    # (Prometheus), never from everywhere; `http` from somewhere named.
    scrape_allowed = set()
    for p in policies:
        where = f"{path}: {obj_name(p)}"
        pods = [d for d in deployments
                if selector_matches(p["spec"].get("podSelector", {}),
                                    d["spec"]["template"].get("metadata", {}).get("labels", {}))]
        for rule in p["spec"].get("ingress", []):
            sources = rule.get("from") or []
            if not rule.get("ports"):
                fail(where, "an ingress rule without `ports` opens every port, the admin port included")
                continue
            for d in pods:
                ports = container_ports((pod_spec(d).get("containers") or [{}])[0])
                for port in rule["ports"]:
                    named = port.get("port")
                    if named == "admin" or (named is not None and named == ports.get("admin")):
                        if not sources or any(set(s) != {"namespaceSelector"} for s in sources):
                            fail(where, f"{d['metadata']['name']}'s admin port (/metrics, /v1/admin) may be "
                                        "reached only from Prometheus' namespace (namespaceSelector alone)")
                        else:
                            scrape_allowed.add(d["metadata"]["name"])
                    elif not sources:
                        fail(where, f"port {named} of {d['metadata']['name']} is open to every source: "
                                    "name the ingress controller's namespace and this namespace in `from`")
    for d in deployments:
        if d["metadata"]["name"] not in scrape_allowed:
            fail(path, f"no NetworkPolicy lets Prometheus reach the admin port of {d['metadata']['name']}")


def nginx_size(text: str) -> int | None:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", str(text).strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def path_covers(rule_path: str, path_type: str, target: str) -> bool:
    """Whether an Ingress path (Prefix: element-wise; Exact; or, for
    ImplementationSpecific, as nginx would, a plain string prefix) routes
    `target` or anything under it."""
    p = rule_path or "/"
    if path_type == "Exact":
        return p.rstrip("/") == target or p.startswith(target + "/")
    if path_type == "Prefix":
        base = p.rstrip("/")
        return (target == base or target.startswith(base + "/") or base.startswith(target + "/")
                or base == target)
    return target.startswith(p) or p.startswith(target)


def check_ingress(path: str, ingresses: list[dict], services: dict[str, dict]) -> None:
    if path.endswith("production") and not ingresses:
        fail(path, "no Ingress routing the public API")
    limit = herald_defaults()["http"]["max_batch_body_bytes"]
    routed: dict[str, set[str]] = {}
    for ing in ingresses:
        where = f"{path}: {obj_name(ing)}"
        spec, ann = ing.get("spec", {}), ing.get("metadata", {}).get("annotations", {}) or {}
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            if number(ann.get(NGINX + key)) is None or number(ann[NGINX + key]) < WS_TIMEOUT_SECONDS:
                fail(where, f"annotation {NGINX}{key} must be >= {WS_TIMEOUT_SECONDS} (WebSockets live long)")
        size = nginx_size(ann.get(NGINX + "proxy-body-size", ""))
        if size != limit:
            fail(where, f"annotation {NGINX}proxy-body-size must equal http.max_batch_body_bytes "
                        f"({limit} bytes, e.g. {limit >> 20}m), got {ann.get(NGINX + 'proxy-body-size')!r}")
        if spec.get("defaultBackend"):
            fail(where, "no defaultBackend: it would route every path, /metrics included")
        if not spec.get("tls") or not all(t.get("secretName") for t in spec["tls"]):
            fail(where, "needs a tls section naming its certificate Secret")
        for rule in spec.get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                rp, pt = p.get("path", "/"), p.get("pathType", "ImplementationSpecific")
                backend = p.get("backend", {}).get("service", {})
                svc_name, port = backend.get("name"), backend.get("port", {})
                pw = f"{where} path {rp}"
                for never in NEVER_ROUTED:
                    if path_covers(rp, pt, never):
                        fail(pw, f"routes {never} to the outside")
                svc = services.get(svc_name)
                if svc is None:
                    fail(pw, f"backend Service {svc_name} is not rendered")
                    continue
                svc_ports = {sp.get("name"): sp for sp in svc["spec"].get("ports", [])}
                if port.get("name", "") != "http" and port.get("number") != svc_ports.get("http", {}).get("port"):
                    fail(pw, f"backend must use port http of Service {svc_name}")
                for sp in svc["spec"].get("ports", []):
                    if sp.get("name") == "admin" or sp.get("targetPort") in ("admin", 9090) or sp.get("port") == 9090:
                        fail(f"{path}: Service/{svc_name}", "the Ingress routes to this Service: it must not "
                                                            "expose the admin port")
                routed.setdefault(svc_name, set()).add(rp.rstrip("/"))
    if ingresses:
        for svc_name, need in INGRESS_ROUTES.items():
            for p in need:
                if p not in routed.get(svc_name, set()):
                    fail(path, f"the Ingress does not route {p} to {svc_name}")


def check_podmonitors(path: str, monitors: list[dict], deployments: list[dict]) -> None:
    if path.endswith("production") and not monitors:
        fail(path, "no PodMonitor: nothing scrapes the admin ports (include k8s/components/monitoring)")
    if not monitors:
        return
    covered = set()
    for pm in monitors:
        where = f"{path}: {obj_name(pm)}"
        spec = pm.get("spec", {})
        if spec.get("jobLabel") != "app.kubernetes.io/name":
            fail(where, "jobLabel must be app.kubernetes.io/name: the alert rules and KEDA's query "
                        "select job=ingest-api|stream-worker|ws-gateway")
        eps = spec.get("podMetricsEndpoints", [])
        if not eps:
            fail(where, "no podMetricsEndpoints")
        for ep in eps:
            if ep.get("port") != "admin" or ep.get("path", "/metrics") != "/metrics":
                fail(where, f"must scrape port admin, path /metrics (got port {ep.get('port')!r}, "
                            f"path {ep.get('path')!r}): the API port serves no /metrics")
        for d in deployments:
            if selector_matches(spec.get("selector", {}), d["spec"]["template"].get("metadata", {}).get("labels", {})):
                covered.add(d["metadata"]["name"])
    for s in SERVICES:
        if s not in covered:
            fail(path, f"no PodMonitor selects the pods of {s}")


def alerts_groups() -> list:
    return (yaml.safe_load((ROOT / ALERTS).read_text()) or {}).get("groups", [])


def check_prometheusrules(path: str, rules: list[dict]) -> None:
    if path.endswith("production") and not rules:
        fail(path, "no PrometheusRule carrying deploy/prometheus/alerts.yml (include k8s/components/monitoring)")
    want = alerts_groups()
    for pr in rules:
        where = f"{path}: {obj_name(pr)}"
        got = pr.get("spec", {}).get("groups", [])
        if got == want:
            continue
        names = lambda gs: {(g.get("name"), r.get("alert") or r.get("record")): r  # noqa: E731
                            for g in gs for r in g.get("rules", [])}
        a, b = names(got), names(want)
        diff = sorted({k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}, key=str)
        detail = ", ".join(f"{g}/{r}" for g, r in diff[:5]) or "group names, order or fields"
        fail(where, f"spec.groups differ from {ALERTS} ({detail}); "
                    "run scripts/lint-deploy.sh --write-prometheusrule")


def write_prometheusrule() -> None:
    """k8s/components/monitoring/prometheusrule.yaml from alerts.yml: the
    `groups:` block copied as text, indented under `spec:`."""
    text = (ROOT / ALERTS).read_text()
    start = re.search(r"^groups:", text, re.M)
    body = "".join(("  " + line) if line.strip() else line
                   for line in text[start.start():].splitlines(keepends=True))
    out = (
        "# GENERATED from deploy/prometheus/alerts.yml by\n"
        "#   scripts/lint-deploy.sh --write-prometheusrule\n"
        "# Edit alerts.yml, then regenerate: `make lint-deploy` fails while they differ.\n"
        "# Runbooks: docs/operations.md#alerts.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: herald\n"
        "  labels:\n"
        "    app.kubernetes.io/name: herald\n"
        "    app.kubernetes.io/part-of: herald\n"
        "spec:\n" + body
    )
    (ROOT / PROMETHEUSRULE).write_text(out)
    print(f"lint-deploy: wrote {PROMETHEUSRULE}")


def check_objects(path: str, docs: list[dict], crd_validators: dict, known: set[str]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind", ""), []).append(doc)
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    for doc in docs:
        where = f"{path}: {obj_name(doc)}"
        validate_schema(where, doc, crd_validators)
        if doc.get("kind") != "Namespace" and doc.get("metadata", {}).get("namespace") != NAMESPACE:
            fail(where, f"must be in namespace {NAMESPACE}")
        if doc.get("kind") == "Secret":
            fail(where, "Secrets must not be in the manifests (create herald-secrets out of band)")
        if doc.get("kind") == "Deployment":
            check_deployment(where, doc, path, configmaps)
        if doc.get("kind") == "Job":
            check_migrate_job(where, doc)
    deployments = by_kind.get("Deployment", [])
    names = {d["metadata"]["name"] for d in deployments}
    if names != set(SERVICES):
        fail(path, f"Deployments {sorted(names)} != {sorted(SERVICES)}")
    services = {d["metadata"]["name"]: d for d in by_kind.get("Service", [])}
    pdbs = {d["metadata"]["name"] for d in by_kind.get("PodDisruptionBudget", [])}
    for s in SERVICES:
        if s not in services:
            fail(path, f"no Service for {s}")
        if s not in pdbs:
            fail(path, f"no PodDisruptionBudget for {s}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        # minAvailable is absolute whatever the replica count: at 30 pods,
        # minAvailable 2 lets a drain evict 28 at once.
        spec = pdb.get("spec", {})
        if spec.get("minAvailable") is not None or spec.get("maxUnavailable") is None:
            fail(f"{path}: {obj_name(pdb)}", "PDBs use maxUnavailable (a count or a percentage), not minAvailable")
    # Exactly one autoscaler per Deployment: HPA for ingest-api, KEDA for the others.
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    sos = by_kind.get("ScaledObject", [])
    hpa_targets = [h["spec"]["scaleTargetRef"]["name"] for h in hpas]
    so_targets = [so["spec"]["scaleTargetRef"]["name"] for so in sos]
    if sorted(hpa_targets) != sorted(HPA_TARGETS):
        fail(path, f"HPAs must target {sorted(HPA_TARGETS)} only (KEDA owns the others), got {sorted(hpa_targets)}")
    if sorted(so_targets) != sorted(SCALEDOBJECT_TARGETS):
        fail(path, f"ScaledObjects must target {sorted(SCALEDOBJECT_TARGETS)}, one each, got {sorted(so_targets)}")
    minimums = [(obj_name(h), h["spec"].get("minReplicas", 1)) for h in hpas] + [
        (obj_name(so), so["spec"].get("minReplicaCount", 0)) for so in sos
    ]
    for name, minimum in minimums:
        if path.endswith("production") and minimum < 2:
            fail(f"{path}: {name}", f"production keeps at least 2 replicas (minimum {minimum})")
        if path.endswith("dev") and minimum != 1:
            fail(f"{path}: {name}", f"dev runs 1 replica (minimum {minimum})")
    if not any(j.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("args") == ["migrate"]
               for j in by_kind.get("Job", [])):
        fail(path, "no migration Job running `stream-worker migrate`")
    auths = {t["metadata"]["name"] for t in by_kind.get("TriggerAuthentication", [])}
    gateway = next((d for d in deployments if d["metadata"]["name"] == "ws-gateway"), None)
    max_connections = None
    if gateway is not None:
        value = effective_env(pod_spec(gateway)["containers"][0], configmaps).get("HERALD__GATEWAY__MAX_CONNECTIONS", "0")
        max_connections = int(value) if value.isdigit() else -1
        if path.endswith("production") and max_connections <= 0:
            fail(f"{path}: Deployment/ws-gateway", "production must set HERALD__GATEWAY__MAX_CONNECTIONS > 0 "
                                                  "(sized to the pod's memory limit)")
    for so in sos:
        where = f"{path}: {obj_name(so)}"
        target = so["spec"]["scaleTargetRef"]["name"]
        if so["spec"].get("minReplicaCount", 0) < 1:
            fail(where, "minReplicaCount must be >= 1")
        types = {t.get("type") for t in so["spec"].get("triggers", [])}
        if so["spec"].get("fallback") and types & {"cpu", "memory"}:
            fail(where, "KEDA refuses `fallback` on a ScaledObject with a cpu or memory trigger")
        if target == "ws-gateway":
            # The dev overlay sets no limit: no threshold comparison there.
            check_gateway_scaledobject(where, so, max_connections if max_connections else None, known)
        if target != "stream-worker":
            continue
        seen = set()
        for trig in so["spec"].get("triggers", []):
            if trig.get("type") != "redis-streams":
                continue
            check_redis_trigger(where, trig)
            seen.add(trig.get("metadata", {}).get("stream", "")[len(STREAM_PREFIX):])
            ref = trig.get("authenticationRef", {}).get("name")
            if ref and ref not in auths:
                fail(where, f"authenticationRef {ref} is not rendered")
        if seen != set(PRIORITIES):
            fail(where, f"redis-streams triggers cover {sorted(seen)}, need every priority")
    # Services carry the API port only: the admin port is for Prometheus,
    # which scrapes pods (PodMonitor), and for port-forwards.
    for name, svc in services.items():
        for sp in svc["spec"].get("ports", []):
            if sp.get("name") != "http" or sp.get("targetPort") not in ("http", 8080):
                fail(f"{path}: Service/{name}", f"exposes port {sp.get('name')} -> {sp.get('targetPort')}: "
                                               "Services carry only port http (targetPort http)")
    check_network_policies(path, by_kind.get("NetworkPolicy", []), deployments)
    check_ingress(path, by_kind.get("Ingress", []), services)
    check_podmonitors(path, by_kind.get("PodMonitor", []), deployments)
    check_prometheusrules(path, by_kind.get("PrometheusRule", []))


# ---------------------------------------------------------------- compose

HEALTHCHECK = ["CMD", "/app/bin/herald", "healthcheck"]
SECRETS_DIR = "/herald-secrets"
SECRETS_FILE = SECRETS_DIR + "/herald.toml"
# A JWT secret written into the file: a quoted value that is not a printf
# format or a shell expansion.
JWT_LITERAL = re.compile(r"""jwt_secret\s*=\s*\\?["'](?![%$])[^"'\s]""", re.I)


def compose_deps(svc: dict) -> dict:
    dep = svc.get("depends_on", {})
    return dep if isinstance(dep, dict) else {d: {} for d in dep}


def published(port: object) -> tuple[str | None, str | None]:
    """(host ip, host port) of a compose `ports` entry, short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), str(port.get("published")) if port.get("published") is not None else None
    parts = str(port).rsplit("/", 1)[0].split(":")
    if len(parts) == 3:
        return parts[0], parts[1]
    if len(parts) == 2:
        return None, parts[0]
    return None, None


def check_compose() -> None:
    path = "deploy/docker-compose.yml"
    proc = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(ROOT / path)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().replace("\n", "\n    ")
        fail(path, "compose-spec validation failed:\n    " + out)
        return
    text = (ROOT / path).read_text()
    doc = yaml.safe_load(text)
    svcs = doc.get("services", {})
    for s in ("postgres", "redis", "migrate", *SERVICES, "otel-collector", "jaeger", "secrets", "dev-key", "demo"):
        if s not in svcs:
            fail(path, f"service {s} missing")
    cmd = " ".join(svcs.get("redis", {}).get("command", []))
    if "--appendonly yes" not in cmd or "--appendfsync everysec" not in cmd:
        fail(path, "redis must run with --appendonly yes --appendfsync everysec")
    if svcs.get("migrate", {}).get("command") != ["migrate"]:
        fail(path, "migrate service must run `migrate`")
    # Nothing listens beyond this machine.
    for name, svc in svcs.items():
        for port in svc.get("ports", []):
            ip, _ = published(port)
            if ip != "127.0.0.1":
                fail(f"{path}: {name}", f"port {port!r} must be published on 127.0.0.1 only")
    # The JWT secret is generated into a volume, never shipped in the file.
    for name, svc in svcs.items():
        env = svc.get("environment", {})
        keys = env.keys() if isinstance(env, dict) else [str(e).split("=", 1)[0] for e in env]
        for k in keys:
            if "JWT_SECRET" in k.upper():
                fail(f"{path}: {name}", f"environment {k}: the JWT secret comes from {SECRETS_FILE}, "
                                        "generated by the `secrets` one-shot")
    if JWT_LITERAL.search(text):
        fail(path, "a literal jwt_secret value is in the file")
    if SECRETS_FILE not in " ".join(map(str, svcs.get("secrets", {}).get("command") or [])) + \
            " ".join(map(str, svcs.get("secrets", {}).get("entrypoint") or [])):
        fail(f"{path}: secrets", f"must write {SECRETS_FILE}")
    # Herald containers: those built from deploy/Dockerfile.
    herald = {n: s for n, s in svcs.items() if s.get("build", {}).get("args", {}).get("SERVICE")}
    for name, svc in herald.items():
        where = f"{path}: {name}"
        env = svc.get("environment", {})
        if not isinstance(env, dict) or env.get("HERALD_CONFIG") != SECRETS_FILE:
            fail(where, f"HERALD_CONFIG must be {SECRETS_FILE}")
        mounts = [str(v) for v in svc.get("volumes", [])]
        if not any(m.split(":")[1:] == [SECRETS_DIR, "ro"] for m in mounts):
            fail(where, f"must mount the secrets volume read-only on {SECRETS_DIR}")
        deps = compose_deps(svc)
        for dep, cond in deps.items():
            if not isinstance(cond, dict) or "condition" not in cond:
                fail(where, f"depends_on {dep} needs a condition (service_healthy / service_completed_successfully)")
        if deps.get("secrets", {}).get("condition") != "service_completed_successfully":
            fail(where, "must depend on secrets (service_completed_successfully)")
        if name in SERVICES:
            if deps.get("migrate", {}).get("condition") != "service_completed_successfully":
                fail(where, "must depend on migrate (service_completed_successfully)")
            if svc.get("healthcheck", {}).get("test") != HEALTHCHECK:
                fail(where, f"healthcheck test must be {HEALTHCHECK} (the image has no shell)")
        elif svc.get("restart") != "no":
            fail(where, 'a one-shot needs restart: "no"')
        if name in SERVICES and svc.get("build", {}).get("args", {}).get("SERVICE") != name:
            fail(where, f"must build deploy/Dockerfile with SERVICE={name}")
    for s in SERVICES:
        if s in svcs and s not in herald:
            fail(path, f"{s} must build deploy/Dockerfile with SERVICE={s}")
    key = svcs.get("dev-key", {})
    if key.get("command") != ["keys", "create", "--name", "dev", "--if-absent"]:
        fail(f"{path}: dev-key", "must run `keys create --name dev --if-absent`")
    if compose_deps(key).get("migrate", {}).get("condition") != "service_completed_successfully":
        fail(f"{path}: dev-key", "must depend on migrate (service_completed_successfully)")
    demo = svcs.get("demo", {})
    for dep, cond in compose_deps(demo).items():
        if not isinstance(cond, dict) or "condition" not in cond:
            fail(f"{path}: demo", f"depends_on {dep} needs a condition")
    if compose_deps(demo).get("ws-gateway", {}).get("condition") != "service_healthy":
        fail(f"{path}: demo", "must depend on ws-gateway (service_healthy)")
    origins = str(svcs.get("ws-gateway", {}).get("environment", {}).get("HERALD__GATEWAY__ALLOWED_ORIGINS", ""))
    for port in demo.get("ports", []):
        _, host_port = published(port)
        for origin in (f"http://localhost:{host_port}", f"http://127.0.0.1:{host_port}"):
            if origin not in origins.split(","):
                fail(f"{path}: ws-gateway", f"HERALD__GATEWAY__ALLOWED_ORIGINS must list the demo's {origin}")
    for extra in ("deploy/otel-collector.yaml", "deploy/prometheus/prometheus.yml"):
        try:
            yaml.safe_load((ROOT / extra).read_text())
        except (OSError, yaml.YAMLError) as err:
            fail(extra, f"does not parse: {err}")


# ---------------------------------------------------------------- metrics, dashboard, alerts

METRIC_RE = re.compile(r"\bherald_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum")
GRAFANA_VARS = re.compile(r"\$(__rate_interval|__interval|__range|\{__rate_interval\}|\{__interval\})")


def documented_metrics() -> set[str]:
    text = (ROOT / "docs/operations.md").read_text()
    m = re.search(r"^## Metrics\n(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        fail("docs/operations.md", "no '## Metrics' section")
        return set()
    names = set(re.findall(r"^\| `(herald_[a-z0-9_]+)` \|", m.group(1), re.M))
    for heading in ("### Every service", "### ingest-api", "### stream-worker", "### ws-gateway"):
        if heading not in m.group(1):
            fail("docs/operations.md", f"metrics section lacks '{heading}'")
    if not names:
        fail("docs/operations.md", "no metric rows found in '## Metrics'")
    return names


def doc_anchors() -> set[str]:
    anchors = set()
    for line in (ROOT / "docs/operations.md").read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            anchors.add(slug)
    return anchors


def check_expr(where: str, expr: str, known: set[str]) -> None:
    try:
        promql_parser.parse(GRAFANA_VARS.sub("5m", expr))
    except Exception as err:  # the parser raises its own error types
        fail(where, f"PromQL does not parse: {err}: {expr!r}")
    for name in METRIC_RE.findall(expr):
        base = name
        for suf in SUFFIXES:
            if base.endswith(suf) and base[: -len(suf)] in known:
                base = base[: -len(suf)]
        if base not in known:
            fail(where, f"metric {name} is not in docs/operations.md#metrics")


def check_dashboard(known: set[str]) -> None:
    path = "deploy/grafana/herald-dashboard.json"
    try:
        dash = json.loads((ROOT / path).read_text())
    except (OSError, ValueError) as err:
        fail(path, f"does not parse: {err}")
        return
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        fail(path, "schemaVersion must be >= 36")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
        fail(path, "needs a datasource variable DS_PROMETHEUS")

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    seen_titles, n_exprs = [], 0
    for p in panels(dash.get("panels", [])):
        if p.get("type") == "row":
            continue
        seen_titles.append(p.get("title", ""))
        for t in p.get("targets", []):
            n_exprs += 1
            check_expr(f"{path}: panel '{p.get('title')}'", t.get("expr", ""), known)
    if n_exprs == 0:
        fail(path, "no queries")
    used = set(METRIC_RE.findall(json.dumps(dash)))
    for need in ("herald_gateway_delivery_seconds_bucket", "herald_dlq_entries", "herald_stream_lag_entries",
                 "herald_stream_pending_entries", "herald_ingest_notifications_accepted_total",
                 "herald_ingest_notifications_rejected_total", "herald_gateway_connections",
                 "herald_gateway_users_online", "herald_worker_retries_total",
                 "herald_worker_dead_letters_total", "herald_worker_ingest_to_store_seconds_bucket",
                 "herald_http_requests_total"):
        if need not in used:
            fail(path, f"no panel uses {need}")


def check_alerts(known: set[str]) -> None:
    path = "deploy/prometheus/alerts.yml"
    try:
        doc = yaml.safe_load((ROOT / path).read_text())
    except (OSError, yaml.YAMLError) as err:
        fail(path, f"does not parse: {err}")
        return
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(groups, list) or not groups:
        fail(path, "needs a non-empty `groups` list")
        return
    anchors = doc_anchors()
    names = set()
    for g in groups:
        if not g.get("name") or not isinstance(g.get("rules"), list):
            fail(path, "each group needs name and rules")
            continue
        for r in g["rules"]:
            where = f"{path}: {r.get('alert', '?')}"
            for key in ("alert", "expr", "for"):
                if key not in r:
                    fail(where, f"missing {key}")
            if r.get("alert") in names:
                fail(where, "duplicate alert name")
            names.add(r.get("alert"))
            if r.get("labels", {}).get("severity") not in ("info", "warning", "critical"):
                fail(where, "labels.severity must be info|warning|critical")
            ann = r.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    fail(where, f"annotations.{key} missing")
            url = ann.get("runbook_url", "")
            if "docs/operations.md#" not in url:
                fail(where, "runbook_url must point to docs/operations.md#<anchor>")
            elif url.split("#", 1)[1] not in anchors:
                fail(where, f"runbook_url anchor #{url.split('#', 1)[1]} is not a heading of docs/operations.md")
            if not re.fullmatch(r"\d+[smhd]", str(r.get("for", ""))):
                fail(where, f"`for` {r.get('for')!r} is not a duration")
            check_expr(where, str(r.get("expr", "")), known)
    required = ("herald_stream_lag_entries", "herald_stream_pending_entries", "herald_dlq_entries",
                "kube_pod_status_ready", "herald_gateway_delivery_seconds_bucket",
                "herald_gateway_send_queue_drops_total")
    text = (ROOT / path).read_text()
    for need in required:
        if need not in text:
            fail(path, f"no rule uses {need}")
    if not re.search(r"\bup\{[^}]*\} == 0", text):
        fail(path, "no `up == 0` rule")


# ---------------------------------------------------------------- Dockerfile: what `cargo chef cook` needs

DOCKERFILE = "deploy/Dockerfile"
DEP_TABLES = ("dependencies", "dev-dependencies", "build-dependencies")
# A builder stage without the COPY that cook needs: the check must flag every
# path it requires outside the members (see check_cook_inputs).
COOK_SELF_TEST = """FROM rust AS chef
WORKDIR /src
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
"""


def workspace_members(manifest: dict) -> list[str]:
    """Member directories as Cargo finds them: `members` globs (one path
    component per `*`), minus `exclude` prefixes, each with a Cargo.toml."""
    ws = manifest.get("workspace", {})
    excluded = [posixpath.normpath(e) for e in ws.get("exclude", [])]
    found = set()
    for pattern in ws.get("members", []):
        for d in ROOT.glob(pattern):
            rel = d.relative_to(ROOT).as_posix()
            if (d / "Cargo.toml").is_file() and not any(rel == e or rel.startswith(e + "/") for e in excluded):
                found.add(rel)
    return sorted(found)


def cargo_path_deps(manifest: dict, members: list[str]) -> list[tuple[str, str]]:
    """(where it is declared, path from the repository root) of every `path` in
    [patch.*] and [workspace.dependencies], and of the members' own path
    dependencies: Cargo needs all of them to resolve the workspace."""
    found = []

    def add(where: str, base: str, deps: dict) -> None:
        for name, dep in deps.items():
            if isinstance(dep, dict) and "path" in dep:
                found.append((f"{where} {name}", posixpath.normpath(posixpath.join(base, dep["path"]))))

    for registry, deps in manifest.get("patch", {}).items():
        add(f"Cargo.toml [patch.{registry}]", "", deps)
    add("Cargo.toml [workspace.dependencies]", "", manifest.get("workspace", {}).get("dependencies", {}))
    for member in members:
        m = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        tables = [(t, m.get(t, {})) for t in DEP_TABLES]
        tables += [(f"target.{k}.{t}", v.get(t, {})) for k, v in m.get("target", {}).items() for t in DEP_TABLES]
        for table, deps in tables:
            add(f"{member}/Cargo.toml [{table}]", member, deps)
    return found


def repo_files(path: str) -> list[str]:
    """Files under `path` that a clean checkout has (git-tracked: an editor's
    stray file is not the build's business), relative to the root; a plain
    walk outside a git checkout."""
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--", path],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return sorted({f for f in proc.stdout.splitlines() if (ROOT / f).is_file()})
    return sorted((p.relative_to(ROOT).as_posix()) for p in (ROOT / path).rglob("*") if p.is_file())


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern]]:
    """(exception?, regex) per .dockerignore line, as Docker's patternmatcher
    reads them (`*`/`?` stay within a path component, `**` spans several)."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = posixpath.normpath(line.lstrip("!").strip().strip("/"))
        rx, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            elif pat[i] == "[" and "]" in pat[i:]:
                j = pat.index("]", i)
                rx, i = rx + pat[i : j + 1], j + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        rules.append((negate, re.compile(rx + r"\Z")))
    return rules


def dockerignored(rules: list[tuple[bool, re.Pattern]], file: str) -> bool:
    # A pattern excludes a file when it matches the file or one of its parent
    # directories; later lines win, `!` lines re-include.
    parts = file.split("/")
    candidates = [file] + ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    ignored = False
    for negate, rx in rules:
        if ignored != negate:
            continue
        if any(rx.match(c) for c in candidates):
            ignored = not negate
    return ignored


def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(first line, KEYWORD, arguments), continuation lines joined and
    comment lines dropped (the default `\\` escape)."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        keyword, _, args = buf.partition(" ")
        out.append((start, keyword.upper(), args.strip()))
        buf = ""
    return out


def copy_lands(src: str, dest: str, dest_is_dir: bool, file: str) -> str | None:
    """Where `COPY src dest` (src from the build context) puts context file
    `file`, or None if it does not copy it. A directory's contents go into
    dest; a file goes to dest/<name> when dest is a directory."""
    src = posixpath.normpath(src.lstrip("/"))
    parts, sparts = file.split("/"), [] if src == "." else src.split("/")
    if len(parts) < len(sparts) or not all(fnmatch.fnmatchcase(p, s) for p, s in zip(parts, sparts)):
        return None
    if len(parts) == len(sparts):
        return posixpath.join(dest, parts[-1]) if dest_is_dir else dest
    return posixpath.join(dest, *parts[len(sparts):])


def check_cook_inputs(dockerfile_text: str) -> list[tuple[str, str, str]]:
    """`cargo chef cook` builds from the recipe, which restores Cargo.toml,
    Cargo.lock and the workspace members only. Every other path Cargo needs
    (a [patch] path, a path dependency outside the members) must be COPY'd
    from the build context, to the same place under WORKDIR, before the cook
    RUN of its stage, and not be dropped by .dockerignore.
    Returns (path, where, problem) triples."""
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = workspace_members(manifest)
    needed: dict[str, str] = {}
    for what, p in cargo_path_deps(manifest, members):
        if p not in members:
            needed.setdefault(p, what)
    ignore_file = ROOT / ".dockerignore"
    rules = dockerignore_rules(ignore_file.read_text() if ignore_file.exists() else "")
    problems: list[tuple[str, str, str]] = []
    stages: dict[str, dict] = {}
    cooks = []
    stage = None
    for line, keyword, args in dockerfile_instructions(dockerfile_text):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            parent = stages.get(words[0]) if words else None
            stage = {
                "name": words[2] if len(words) >= 3 and words[1].lower() == "as" else f"#{len(stages) + 1}",
                "workdir": parent["workdir"] if parent else "/",
                "copies": list(parent["copies"]) if parent else [],
            }
            stages[stage["name"]] = stage
        elif stage is None:
            continue
        elif keyword == "WORKDIR":
            stage["workdir"] = posixpath.normpath(posixpath.join(stage["workdir"], args))
        elif keyword in ("COPY", "ADD"):
            words = args.split()
            n = next((i for i, w in enumerate(words) if not w.startswith("--")), len(words))
            flags, rest = words[:n], (args.split(None, n)[n:] or [""])[0]
            paths = json.loads(rest) if rest.startswith("[") else rest.split()
            # --from copies out of another stage or image, not the context.
            if len(paths) >= 2 and not any(f.startswith("--from") for f in flags):
                dest = posixpath.join(stage["workdir"], paths[-1])
                dest_is_dir = paths[-1].endswith("/") or len(paths) > 2 or any(c in "".join(paths[:-1]) for c in "*?[")
                stage["copies"] += [(s, posixpath.normpath(dest), dest_is_dir) for s in paths[:-1]]
        elif keyword == "RUN" and re.search(r"\bcargo\s+chef\s+cook\b", args):
            cooks.append((line, stage["name"], stage["workdir"], list(stage["copies"])))
    if not cooks:
        problems.append(("", DOCKERFILE, "no `cargo chef cook` RUN found (update check_cook_inputs if chef is gone)"))
    for line, name, workdir, copies in cooks:
        where = f"{DOCKERFILE}:{line}"
        for path, what in needed.items():
            if path == ".." or path.startswith("../"):
                problems.append((path, where, f"{path} ({what}) is outside the build context"))
                continue
            files = repo_files(path)
            if not files:
                problems.append((path, where, f"{path} ({what}) has no tracked files"))
                continue
            missing = [f for f in files
                       if posixpath.join(workdir, f) not in
                       {copy_lands(s, d, isdir, f) for s, d, isdir in copies}]
            ignored = [f for f in files if dockerignored(rules, f)]
            if missing:
                problems.append((path, where, f"`cargo chef cook` (stage {name}) needs {path} ({what}), "
                                 f"but {len(missing)} of its {len(files)} files are not copied to {workdir} "
                                 f"before it (e.g. {missing[0]}); add `COPY {path}/ {path}/` before the cook"))
            if ignored:
                problems.append((path, where, f"{path} ({what}): {len(ignored)} file(s) excluded by "
                                 f".dockerignore (e.g. {ignored[0]}); the cook cannot see them"))
    return problems


def check_dockerfile() -> None:
    try:
        problems = check_cook_inputs((ROOT / DOCKERFILE).read_text())
        manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
        members = workspace_members(manifest)
        want = {p for _, p in cargo_path_deps(manifest, members) if p not in members}
        got = {p for p, _, _ in check_cook_inputs(COOK_SELF_TEST)}
    except (OSError, tomllib.TOMLDecodeError) as err:
        fail(DOCKERFILE, f"cannot check what cargo chef cook needs: {err}")
        return
    for _, where, msg in problems:
        fail(where, msg)
    # The check itself: a builder stage without those COPYs must be flagged
    # for each path it requires, or the check has gone blind.
    if got != want:
        fail("scripts/lint_deploy.py", f"check_cook_inputs self-test: flagged {sorted(got)}, expected {sorted(want)}")


def main() -> int:
    if sys.argv[1:] == ["--write-prometheusrule"]:
        write_prometheusrule()
        return 0
    if sys.argv[1:]:
        print(f"usage: {sys.argv[0]} [--write-prometheusrule]", file=sys.stderr)
        return 2
    crd_validators = {}
    for key, rel in CRD_SCHEMAS.items():
        schema = json.loads((ROOT / rel).read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        crd_validators[key] = jsonschema.Draft7Validator(schema)
    known = documented_metrics()
    counts = {}
    for path in KUSTOMIZE_DIRS:
        docs = render(path)
        counts[path] = len(docs)
        # The base is never applied on its own: it only has to render; its
        # objects are validated as the overlays patch them.
        if docs and path != "k8s/base":
            check_objects(path, docs, crd_validators, known)
    check_compose()
    check_dashboard(known)
    check_alerts(known)
    check_dockerfile()
    if errors:
        for e in errors:
            print(f"lint-deploy: ERROR {e}", file=sys.stderr)
        print(f"lint-deploy: FAILED, {len(errors)} problem(s)", file=sys.stderr)
        return 1
    rendered = ", ".join(f"{p} {n} objects" for p, n in counts.items())
    print(f"lint-deploy: ok ({rendered}; Kubernetes {'/'.join(K8S_VERSIONS)} strict; KEDA and "
          f"Prometheus Operator kinds against deploy/schemas; ports, Ingress, PodMonitor, "
          f"PrometheusRule = alerts.yml, gateway autoscaling; compose-spec and compose rules; "
          f"dashboard and alerts against {len(known)} documented metrics; "
          f"Dockerfile copies what cargo chef cook needs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
