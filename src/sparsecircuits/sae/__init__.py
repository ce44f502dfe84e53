"""Sparse autoencoders on our models' activations: the post-hoc route to units (docs/sae.md).

- `model`: the TopK SAE (Gao et al. 2024) and its BatchTopK variant
- `activations`: activations at a hook point, streamed over the pretraining corpus
- `trainer`: training with AuxK, unit-norm decoder rows, atomic snapshots and resume
- `metrics`, `evaluate`: SAEBench's core metrics on held-out tokens
- `sae_file`: the one reader/writer of our SAE files; `saelens`: SAELens 6 export/import
"""
