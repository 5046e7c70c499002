#!/usr/bin/env bash
# Security scan (checkov) of template.yaml after the offline SAM transform; fails on any
# finding that is neither fixed nor skipped in the template with a written reason.
# The logic is in tests/checkov_scan.py; checkov lives in its own venv (.venv-checkov,
# requirements-checkov.txt) since its pins clash with .venv's (boto3, among others).
#
#     tests/checkov_scan.sh [template.yaml]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
checkov="${CHECKOV:-$root/.venv-checkov/bin/checkov}"
for tool in "$python" "$checkov"; do
  if [ ! -x "$tool" ]; then
    echo "error: $tool is missing; run 'make setup'" >&2
    exit 2
  fi
done
export CHECKOV="$checkov"
exec "$python" "$root/tests/checkov_scan.py" "${1:-$root/template.yaml}"
