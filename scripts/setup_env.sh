#!/usr/bin/env bash
# Create .venv (if needed) and install sparsecircuits into it with the given extras.
# Sourced by main.sh and test.sh; safe to run again (pip skips what is installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$ROOT/.venv"
fi
EXTRAS="${1:-}"
# torch is pinned to the CPU build 2.13.0 in pyproject.toml; installing it first keeps pip
# from resolving a CUDA build for anything that depends on torch.
"$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0"
"$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT${EXTRAS:+[$EXTRAS]}"
