#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv with the test extras, install Debian's
# Chromium for the viewer's browser tests, lint, run pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh test
bash scripts/install_browser.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/pytest -q "$@"
