"""Offline explanation speed: every node of a checkpoint explained and scored, units/s.

    python benchmarks/explain_units.py [--checkpoint models/demo] [--threads 2]
                                       [--locations N] [--windows 256]

Runs what `sparsecircuits explain CKPT` runs with the offline explainer (into a temporary
cache, so nothing is reused) and prints the one-time cost of labelling the corpus with
predicates, then units/s over the explained locations and the estimated time for all nodes.
`--locations N` explains only the first N node locations (a quick run); the estimate scales
the measured rate to every node. Target: all nodes of models/demo in 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from sparsecircuits.autointerp.corpus import ExplainConfig, build_corpus
from sparsecircuits.autointerp.offline import OfflineExplainer
from sparsecircuits.autointerp.run import explain_units, open_cache
from sparsecircuits.autointerp.units import location_units
from sparsecircuits.checkpoint import load_checkpoint

TARGET_S = 600.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="models/demo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--locations", type=int, default=None, help="only the first N locations")
    ap.add_argument("--windows", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint)
    cfg = ExplainConfig(windows=args.windows)
    model = loaded.model
    all_nodes = sum(model.location_width.values())
    locations = model.locations[: args.locations] if args.locations else model.locations
    units = location_units(model, locations)

    t0 = time.perf_counter()
    corpus = build_corpus(loaded, cfg)
    corpus_s = time.perf_counter() - t0
    print(f"corpus: {len(corpus.tokens)} windows labelled with "
          f"{len(corpus.explain.predicates.names)} predicates in {corpus_s:.1f}s (once per run)")
    with tempfile.TemporaryDirectory() as tmp:
        cache = open_cache(loaded, OfflineExplainer(), cfg, tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        results = explain_units(loaded, units, OfflineExplainer(), cache, cfg, corpus=corpus)
        explain_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    rate = len(results) / explain_s
    estimate = corpus_s + all_nodes / rate
    print(f"explained {len(results)} units ({len(locations)} locations) in {explain_s:.1f}s: "
          f"{rate:.1f} units/s with {args.threads} threads ({len(results) / cpu_s:.1f} units "
          f"per CPU-second: on a busy machine, the wall rate undersells it)")
    print(f"all {all_nodes} nodes: about {estimate / 60:.1f} min "
          f"({'within' if estimate <= TARGET_S else 'OVER'} the {TARGET_S / 60:.0f}-minute target)")


if __name__ == "__main__":
    main()
