"""sparsecircuits: weight-sparse transformers on Python code, and the circuits inside them."""

__version__ = "0.1.0"
