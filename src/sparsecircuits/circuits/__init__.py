"""Circuits by learned node-mask pruning (docs/method.md §5-6): checkpoint + task -> circuit.json.

    config.py        PruneConfig: every pruning hyperparameter, the paper's defaults
    masks.py         one mask parameter per node (or tied q/k pair), Heaviside + surrogate
    ablation.py      what a pruned node becomes: mean (cached), zero or resample
    forward.py       logits at the read position only, length-bucketed evaluation
    task_data.py     a task's splits encoded for pruning; the nonsense-task control
    mask_training.py mask optimisation: task CE + k_coef x kept nodes, AdamW
    discretize.py    search on k over ranked units; logit scale + shift calibration
    pruner.py        Pruner: the above for one model and ablation
    graph.py         the edge rule and the circuit's graph
    validate.py      sufficiency, necessity, controls (re-randomised model, nonsense task)
    attribution.py   the gradient-attribution baseline
    search.py        Optuna search over pruning hyperparameters
    circuit_file.py  circuit.json + its sidecar .safetensors: the one reader and writer
    pipeline.py      find_circuit: everything above, end to end
    cli.py           `sparsecircuits prune`

Importing this package imports nothing else (the CLI stays fast to start).
"""
