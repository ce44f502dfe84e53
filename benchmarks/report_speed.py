"""Report speed: `sparsecircuits report` on a circuit that is already pruned, phase by phase.

    python benchmarks/report_speed.py [CIRCUIT] [--model CKPT] [--threads N] [--out FILE]
                                      [--windows 64] [--n 32]

Runs what `sparsecircuits report CIRCUIT` runs (the pruning that made the circuit is not
timed) and prints, for every phase (loading, graph, node panels, baselines, each mode's
ablations, rendering, writing) and the total, the wall time and the CPU time of this process
(user + system, all threads). On a loaded machine the CPU time is the figure to compare: the
wall time counts the other jobs too (and with 2+ torch threads on a busy machine, threads
waiting for each other add CPU time: `--threads 1` gives the work alone).
Target: total CPU time <= 15 s for the demo's quote circuit.

The default circuit is the one scripts/main.sh prunes:
    sparsecircuits prune models/demo --task single_double_quote --loss two_way \\
        --target-loss 0.3 --no-controls --no-baseline --out circuits/demo
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from sparsecircuits.fileformat import atomic_write_text
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import render_html, report_data, report_target

TARGET_CPU_S = 15.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("circuit", nargs="?", default="circuits/demo/single_double_quote/circuit.json")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=None, help="report file (default: a temporary one)")
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--n", type=int, default=32)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.circuit).is_file():
        raise SystemExit(f"no circuit at {args.circuit}: prune one first (see this file's top)")

    rows: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            rows.append((name, time.perf_counter() - wall, time.process_time() - cpu))
            print(f"  done: {name:<18} {rows[-1][1]:8.2f} {rows[-1][2]:8.2f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "report.html"
        wall0, cpu0 = time.perf_counter(), time.process_time()
        target = report_target(args.circuit, out)
        stats = StatsConfig(windows=args.windows, top_k=6)  # as `sparsecircuits report`
        data = report_data(args.circuit, args.model, stats, args.n, phase=phase)
        with phase("render"):
            html = render_html(data)
        with phase("write"):
            atomic_write_text(target, html)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    print(f"report of {args.circuit} ({len(data['nodes'])} node panels, "
          f"{len(html) / 1e3:.0f} kB), torch threads {torch.get_num_threads()}")
    print(f"{'phase':<20} {'wall s':>8} {'cpu s':>8}")
    for name, w, c in rows:
        print(f"{name:<20} {w:8.2f} {c:8.2f}")
    print(f"{'total':<20} {wall:8.2f} {cpu:8.2f}   (target: cpu <= {TARGET_CPU_S:.0f} s: "
          f"{'met' if cpu <= TARGET_CPU_S else 'NOT met'})")


if __name__ == "__main__":
    main()
