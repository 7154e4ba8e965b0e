#!/usr/bin/env bash
# Installs mmnasdsl on a fresh machine: the CPU build of torch first (an unpinned torch
# would pull a multi-GB CUDA build), Graphviz's `dot` when missing, then the package.
# Usage: bash scripts/install.sh        # the package
#        bash scripts/install.sh dev    # the package and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet torch==2.13.0
fi
if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq graphviz >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq graphviz >/dev/null 2>&1; }) \
      || echo "warning: could not install graphviz; .dot output still works" >&2
  fi
fi
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
"$PY" -m pip install --quiet -e ".${extra}"
