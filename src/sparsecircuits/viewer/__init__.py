"""The circuit viewer (docs/architecture.md stage 6): see a circuit the way the paper draws one, and poke it.

    circuit_adapter.py  a circuit (read by circuits/circuit_file.py) as the viewer shows it
    workspace.py     models and circuits under an artifacts directory; path checks; model LRU
    node_stats.py    a node on pretraining text (snippets, histogram, mean), on the task, on
                     typed text; its direct logit effect
    graph.py         a circuit as layer bands, nodes, edges, token edges
    interventions.py ablate / clamp / scale nodes and re-score the task (full model or circuit)
    steer.py         generate text with and without an intervention
    panels.py        the JSON documents the front end renders (shared by app and report)
    app.py           FastAPI: JSON routes + static/ (plain JS/SVG/CSS, nothing from the network)
    report.py        the single-file HTML export
    cli.py           `sparsecircuits serve | report | steer`
"""
