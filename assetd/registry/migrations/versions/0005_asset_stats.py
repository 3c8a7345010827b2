"""per-asset counters (``asset_stats``), filled from the instances already registered

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 08:40:00

``assets`` read the instance count and latest ready version by counting every instance of
the branch; from this revision the daemon keeps them in ``asset_stats`` in the transaction
of each change. The upgrade fills the table from the existing instances in one statement
(a full scan, once); stop the daemons before, as for every migration.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "asset_stats",
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("branch", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("asset", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("instances", sa.BigInteger(), nullable=False),
        sa.Column("latest", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("project", "branch", "asset"),
    )
    op.execute(
        "INSERT INTO asset_stats (project, branch, asset, instances, latest) "
        "SELECT project, branch, asset, count(*), "
        "max(CASE WHEN state = 'ready' AND validity <> 'invalidated' THEN version END) "
        "FROM instance GROUP BY project, branch, asset"
    )


def downgrade() -> None:
    op.drop_table("asset_stats")
