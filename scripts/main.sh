#!/usr/bin/env bash
# The main job on the embedded default corpus (this interpreter's standard library):
# set up .venv, train the `demo` weight-sparse model (about 30 minutes on 2 CPU cores),
# and report where the checkpoint is. Running it again resumes or reuses the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh
SC=".venv/bin/sparsecircuits"
PRESET="${PRESET:-demo}"
RUN="${RUN:-runs/$PRESET}"
if [ -e "$RUN/checkpoint" ]; then
    "$SC" train --config "$PRESET" --out "$RUN" --resume
else
    "$SC" train --config "$PRESET" --out "$RUN"
fi
"$SC" eval "$RUN"
"$SC" tasks eval "$RUN" --json "$RUN/tasks.json"
echo
echo "$PRESET checkpoint: $ROOT/$RUN/checkpoint"
echo "next: .venv/bin/sparsecircuits prune $RUN --task single_double_quote --loss two_way --target-loss 0.3"
echo "      .venv/bin/sparsecircuits serve --artifacts .   (then open http://127.0.0.1:8765)"
