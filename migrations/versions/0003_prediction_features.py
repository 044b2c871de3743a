"""Predictions keep the features they were scored with, for retraining.

``features`` holds the values in the order of the feature list ``feature_version`` (NULL
elements where a feature was missing); rows written before this revision have neither.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE predictions ADD COLUMN feature_version text, "
        "ADD COLUMN features double precision[]"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE predictions DROP COLUMN features, DROP COLUMN feature_version")
