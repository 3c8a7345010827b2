"""Output for people (Rich tables on a terminal), pipes (TSV) and scripts (``--json``).

User data is always text: cells are Rich ``Text`` objects, never markup, so ``[bold]`` or
``[/x]`` in an annotation prints as it is. When stdout is not a terminal, tables are TSV with
complete values (no width, no ellipsis): one header line, one line per row.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=False)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table (``None`` shows as ``-``): Rich on a terminal, TSV when piped."""
    cells = [["-" if v is None else cell(v) for v in row] for row in rows]
    if not sys.stdout.isatty():
        print("\t".join(columns))
        for row in cells:
            print("\t".join(_tsv(v) for v in row))
        return
    t = Table(title=Text(title), title_justify="left")
    for col in columns:
        t.add_column(Text(col), overflow="fold")
    for row in cells:
        t.add_row(*(Text(v) for v in row))
    out.print(t)


def cell(value: Any) -> str:
    """One value as text: maps as ``k=v, …``, lists comma-separated."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(_scalar, value))
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "null" if value is None else str(value)


def _tsv(value: str) -> str:
    """A TSV field: tab, newline and backslash escaped, so a row stays one line."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") \
        .replace("\r", "\\r")


def instance_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows for a list of instances."""
    return [
        [i["instance"], i["state"], i["validity"], ", ".join(i["aliases"]) or None,
         i["annotations"], i["tags"] or None, i["created_at"], i["producer"]]
        for i in items
    ]


INSTANCE_COLUMNS = ["instance", "state", "validity", "aliases", "annotations", "tags",
                    "created_at", "producer"]
