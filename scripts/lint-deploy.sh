#!/usr/bin/env bash
# lint-deploy.sh: offline checks of every deployment file (make lint-deploy).
#   - renders k8s/base and k8s/overlays/{dev,production} with `kubectl kustomize`
#   - validates every rendered object: Kubernetes kinds (Ingress included) with
#     kubernetes-validate (strict: unknown fields fail) against fixed Kubernetes
#     versions, KEDA and Prometheus Operator kinds against deploy/schemas/*.json;
#     plus Herald's own rules (probes, security context, drain timings, secrets,
#     ports http/admin, autoscaling, NetworkPolicies, Ingress routes and
#     annotations, PodMonitor, PrometheusRule = deploy/prometheus/alerts.yml)
#   - validates deploy/docker-compose.yml against the compose-spec schema, plus
#     Herald's rules (127.0.0.1 ports, generated JWT secret, healthchecks,
#     depends_on conditions)
#   - parses the Grafana dashboard and the alert rules (PromQL included) and
#     checks every herald_* metric they use is listed in docs/operations.md
#   - checks deploy/Dockerfile copies every [patch] path and path dependency
#     of Cargo.toml that is not a workspace member (cargo-chef's recipe has
#     only the members) before `cargo chef cook`, and .dockerignore keeps it
# Exits non-zero, with one line per problem, on any failure.
#
#   scripts/lint-deploy.sh --write-prometheusrule
#       regenerates k8s/components/monitoring/prometheusrule.yaml from
#       deploy/prometheus/alerts.yml instead of checking
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
"$ROOT/scripts/deploy-tools.sh"
export PATH="$ROOT/.tools/venv/bin:$PATH"
exec "$ROOT/.tools/venv/bin/python" "$ROOT/scripts/lint_deploy.py" "$@"
