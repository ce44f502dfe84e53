"""The `sparsecircuits` command: one subcommand (or group) per stage of the pipeline.

Each stage owns its commands in `<stage>/cli.py`; this module only mounts them and turns
user errors (`SparseCircuitsError`) into a one-line message and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from sparsecircuits.clihelp import PlainHelpGroup
from sparsecircuits.errors import SparseCircuitsError

app = typer.Typer(
    name="sparsecircuits",
    cls=PlainHelpGroup,  # conventional help for every subcommand (see clihelp.py)
    help="Weight-sparse transformers on Python code, and the circuits inside them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mount() -> None:
    # Imported inside a function so that importing this module stays cheap.
    from sparsecircuits.autointerp import cli as autointerp_cli
    from sparsecircuits.circuits import cli as circuits_cli
    from sparsecircuits.experiments import cli as experiments_cli
    from sparsecircuits.openai_format import cli as openai_cli
    from sparsecircuits.sae import cli as sae_cli
    from sparsecircuits.tasks import cli as tasks_cli
    from sparsecircuits.train import cli as train_cli
    from sparsecircuits.viewer import cli as viewer_cli

    train_cli.register(app)
    app.add_typer(tasks_cli.app, name="tasks")
    circuits_cli.register(app)
    viewer_cli.register(app)
    experiments_cli.register(app)
    app.add_typer(sae_cli.app, name="sae")
    autointerp_cli.register(app)
    openai_cli.register(app)


def main() -> None:
    _mount()
    try:
        app()
    except SparseCircuitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
