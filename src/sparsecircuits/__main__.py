"""`python -m sparsecircuits` (also what torchrun launches: `torchrun -m sparsecircuits train`)."""

from sparsecircuits.cli import main

main()
