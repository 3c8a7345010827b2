"""Which projects and branches the registry holds, for the web UI's pickers.

Both are skip scans: one index seek per distinct value (the ``asset`` primary key
(project, asset) for projects, the unique (project, branch, asset, version) index for a
project's branches), never a pass over the rows, so the cost is the number of names listed,
not the registry's size. Plain SQL that SQLite and PostgreSQL both run.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

MAX_NAMES = 500

_PROJECTS = text("""
WITH RECURSIVE p(name, n) AS (
    SELECT MIN(project), 1 FROM asset
    UNION ALL
    SELECT (SELECT MIN(project) FROM asset WHERE project > p.name), p.n + 1
    FROM p WHERE p.name IS NOT NULL AND p.n < :limit
)
SELECT name FROM p WHERE name IS NOT NULL
""")

_BRANCHES = text("""
WITH RECURSIVE b(name, n) AS (
    SELECT MIN(branch), 1 FROM instance WHERE project = :project
    UNION ALL
    SELECT (SELECT MIN(branch) FROM instance WHERE project = :project AND branch > b.name),
           b.n + 1
    FROM b WHERE b.name IS NOT NULL AND b.n < :limit
)
SELECT name FROM b WHERE name IS NOT NULL
""")


def projects(conn: Connection, *, limit: int = MAX_NAMES) -> list[str]:
    """The projects that define at least one asset, in name order, at most ``limit``."""
    return [str(r[0]) for r in conn.execute(_PROJECTS, {"limit": limit})]


def branches(conn: Connection, *, project: str, limit: int = MAX_NAMES) -> list[str]:
    """The branches of ``project`` holding at least one instance, exactly as named
    (``user.alice``, ``feature/x``), in name order, at most ``limit``."""
    return [str(r[0]) for r in conn.execute(_BRANCHES, {"project": project, "limit": limit})]
