#!/usr/bin/env bash
# The main job on the embedded default corpus (this interpreter's standard library):
# set up .venv, train the `demo` weight-sparse model (about 30 minutes on 2 CPU cores),
# and report where the checkpoint is. Running it again resumes or reuses the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh
SC=".venv/bin/sparsecircuits"
RUN="${RUN:-runs/demo}"
if [ -e "$RUN/checkpoint" ]; then
    "$SC" train --config demo --out "$RUN" --resume
else
    "$SC" train --config demo --out "$RUN"
fi
"$SC" eval "$RUN"
if "$SC" tasks --help >/dev/null 2>&1; then
    "$SC" tasks eval "$RUN" --json "$RUN/tasks.json"
fi
echo
echo "demo checkpoint: $ROOT/$RUN/checkpoint"
