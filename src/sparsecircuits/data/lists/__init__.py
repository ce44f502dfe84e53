"""Pinned package lists for the `pypi:NAME` corpus source (see `sparsecircuits.data.pypi`)."""
