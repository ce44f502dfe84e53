"""Experiments that reproduce the paper's headline figures on a CPU.

    sparse_vs_dense  Figure 2: circuit size vs task loss, weight-sparse vs dense at equal
                     pretraining loss (`sparsecircuits experiment sparse-vs-dense`)
    frontier         Figure 3: pretraining loss vs circuit size over weight L0 and width
                     (`sparsecircuits experiment frontier`)
"""
