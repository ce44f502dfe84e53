"""Tasks by name: the built-in ones register themselves; a path ending in .jsonl is a user task."""

from __future__ import annotations

from pathlib import Path

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.base import Task

# The 20 tasks of docs/method.md §4, in the paper's order (listing order; built-ins must match).
PAPER_TASKS = (
    "single_double_quote", "final_kwarg", "set_or_string", "set_or_string_fixedvarname",
    "class_init", "with_as", "bracket_brace", "with_open", "bracket_counting", "for_while",
    "else_elif", "fstring_brace", "if_ternary", "var_swap", "indent_for", "lambda_func",
    "if_equals", "enumerate_range", "var_if", "while_return_true",
)  # fmt: skip

_REGISTRY: dict[str, Task] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: add one instance of a task class to the registry under its name."""
    name = cls.name
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} registered twice")
    _REGISTRY[name] = cls()
    return cls


def _load_builtins() -> None:
    # Importing the modules runs their @register decorators.
    from sparsecircuits.tasks import keyword_tasks, python_tasks  # noqa: F401


def all_tasks() -> list[Task]:
    """Built-in tasks: the paper's 20 in its order, then the adversarial variants."""
    _load_builtins()
    order = {name: i for i, name in enumerate(PAPER_TASKS)}
    return sorted(_REGISTRY.values(), key=lambda t: (order.get(t.name, len(order)), t.name))


def get_task(name: str) -> Task:
    """A built-in task by name, or a user task from a `.jsonl` file path."""
    if name.endswith(".jsonl"):
        from sparsecircuits.tasks.jsonl_task import JsonlTask

        return JsonlTask(Path(name))
    _load_builtins()
    if name not in _REGISTRY:
        known = ", ".join(t.name for t in all_tasks())
        raise TaskError(f"unknown task {name!r} (known: {known}; or a path ending in .jsonl)")
    return _REGISTRY[name]


def get_tasks(names: str | list[str] | None) -> list[Task]:
    """Tasks from a comma-separated string or a list; None means all built-in tasks."""
    if names is None:
        return all_tasks()
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    names = [n for n in names if n]
    if not names:
        raise TaskError("no task given")
    return [get_task(n) for n in names]
