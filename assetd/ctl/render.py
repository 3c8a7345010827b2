"""Output for people (Rich tables) and scripts (``--json``)."""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

out = Console()


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table; ``None`` shows as ``-``."""
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("-" if v is None else _cell(v) for v in row))
    out.print(t)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def instance_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows for a list of instances."""
    return [
        [i["instance"], i["state"], i["validity"], ", ".join(i["aliases"]) or None,
         i["annotations"], i["tags"] or None, i["created_at"], i["producer"]]
        for i in items
    ]


INSTANCE_COLUMNS = ["instance", "state", "validity", "aliases", "annotations", "tags",
                    "created_at", "producer"]
