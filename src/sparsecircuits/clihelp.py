"""Help pages that read like a conventional CLI, applied once to the whole command tree.

Typer 0.29 renders every parameter's Python annotation as its type (`--help <bool>`,
`--set <list[str]>`) and writes a required argument as `{checkpoint}` in the usage line. The
root command is built with `cls=PlainHelpGroup`, whose constructor walks every subcommand once
and gives each parameter the conventional rendering: flags show no value type, options show
`TEXT`, `INTEGER`, `FLOAT`, `PATH` or `[a|b]`, arguments appear as `CHECKPOINT` (required)
or `[CHECKPOINT]`, and single line breaks inside a docstring's paragraphs are joined so the
terminal, not the source file, decides where lines wrap.

Typer creates the parameter objects itself and offers no hook for them, so the walk switches
each one to a subclass below that only overrides how it is displayed (parsing is untouched).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

# Typer's annotation-derived labels -> the names click users know.
_TYPE_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "FLOAT",
    "bool": "BOOLEAN",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIRECTORY",
    "datetime": "DATETIME",
}


def plain_type_name(label: str | None) -> str | None:
    """`<list[str]>` -> `TEXT`, `<mean|zero>` -> `[mean|zero]`, `<int range>` -> `INTEGER`."""
    if not label:
        return label
    suffix = ""
    if label.endswith("..."):  # nargs != 1
        label, suffix = label[:-3], "..."
    inner = label[1:-1] if label.startswith("<") and label.endswith(">") else label
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[len("list[") : -1]
    if "|" in inner:
        return f"[{inner}]{suffix}"
    inner = inner.removesuffix(" range")
    return _TYPE_NAMES.get(inner, inner.upper()) + suffix


class PlainOption(TyperOption):
    """An option shown as `--steps INTEGER`; a flag (`--progress/--no-progress`) shows no type."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        return plain_type_name(super().display_type_rich(ctx))


class PlainArgument(TyperArgument):
    """An argument shown as `CHECKPOINT` (or `[CHECKPOINT]` when optional) with a `PATH` type."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar if self.metavar is not None else (self.name or "").upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return plain_type_name(super().display_type_rich(ctx))


def _reflow(text: str | None) -> str | None:
    """Join the single line breaks inside each paragraph; keep `\\b` (verbatim) paragraphs."""
    if not text:
        return text
    paragraphs = text.split("\n\n")
    return "\n\n".join(
        p if p.lstrip().startswith("\b") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _plain_params(command: Any) -> None:
    # The --help option is made lazily and cached on the command: make it now so it is
    # restyled with the rest.
    help_option = command.get_help_option(typer.Context(command, **command.context_settings))
    for param in [*command.params, help_option]:
        if type(param) is TyperOption:
            param.__class__ = PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = PlainArgument


def plain_help(command: Any) -> None:
    """Restyle `command` and every subcommand under it (idempotent)."""
    command.help = _reflow(command.help)
    _plain_params(command)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


class PlainHelpGroup(TyperGroup):
    """Root group whose whole command tree gets conventional help (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        plain_help(self)
