"""article search index: normalised terms, FTS5 on SQLite, a GIN tsvector on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The articles gain the text engine's normalised terms (``title_terms``, ``summary_terms``),
backfilled here for the articles already stored, and a full-text index over them:

- SQLite: ``articles_fts``, an FTS5 external-content table over the two columns (the text
  lives once, in ``articles``), kept in step by three triggers.
- PostgreSQL: ``search_vector``, a stored generated tsvector (title weight A, summary B) in
  the ``simple`` configuration (the terms are already normalised: no stemming, no stop
  words), with a GIN index.

Neither index is in the models: ``migrations/env.py`` keeps them out of ``alembic check``.
The backfill runs the text engine in Python, so offline SQL (``alembic upgrade --sql``)
leaves existing articles unindexed: upgrade online (``newsbot db upgrade``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The terms of the articles already stored are computed by the text engine, which lives in
# bot/ and changes with it: a revision must mean the same thing forever, so it imports none
# of it. The articles get their terms right after the upgrade (``newsbot db reindex``, which
# every command runs by itself after a revision that says this).
REINDEX = True

SEARCH_VECTOR = (
    "setweight(to_tsvector('simple'::regconfig, title_terms), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, summary_terms), 'B')"
)

# The text is normalised before it is stored, so the tokenizer only splits on spaces; with
# remove_diacritics 0 it leaves every letter as the engine wrote it.
SQLITE_FTS = """
CREATE VIRTUAL TABLE articles_fts USING fts5(
    title_terms, summary_terms,
    content='articles', content_rowid='id',
    tokenize='unicode61 remove_diacritics 0'
)
"""

# An external-content index must be told the exact old values to forget a row; the update
# trigger fires only when the terms change, so other updates (flags, times) cost nothing.
SQLITE_TRIGGERS = {
    "articles_fts_insert": """
CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
    INSERT INTO articles_fts(rowid, title_terms, summary_terms)
    VALUES (new.id, new.title_terms, new.summary_terms);
END
""",
    "articles_fts_delete": """
CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN
    INSERT INTO articles_fts(articles_fts, rowid, title_terms, summary_terms)
    VALUES ('delete', old.id, old.title_terms, old.summary_terms);
END
""",
    "articles_fts_update": """
CREATE TRIGGER articles_fts_update AFTER UPDATE OF title_terms, summary_terms ON articles
BEGIN
    INSERT INTO articles_fts(articles_fts, rowid, title_terms, summary_terms)
    VALUES ('delete', old.id, old.title_terms, old.summary_terms);
    INSERT INTO articles_fts(rowid, title_terms, summary_terms)
    VALUES (new.id, new.title_terms, new.summary_terms);
END
""",
}


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "articles", sa.Column("title_terms", sa.Text(), server_default="", nullable=False)
    )
    op.add_column(
        "articles", sa.Column("summary_terms", sa.Text(), server_default="", nullable=False)
    )
    if op.get_context().dialect.name == "postgresql":
        op.add_column(
            "articles",
            sa.Column(
                "search_vector",
                postgresql.TSVECTOR(),
                sa.Computed(SEARCH_VECTOR, persisted=True),
                nullable=True,
            ),
        )
        # A word absent from the column's statistics is estimated at half the rarest word
        # they list; with the default 100 that is ~0.8% of the articles, so a reader's word
        # with a dozen spelling alternatives looks like 10% and gets a plan for a common
        # word. 1000 lists ~2,500 words and brings the floor under 0.02%.
        op.execute("ALTER TABLE articles ALTER COLUMN search_vector SET STATISTICS 1000")
        # fastupdate off: with it, every search also scans the pending list of recent
        # inserts (up to 4 MB); a news feed inserts slowly enough to index each row at once.
        op.create_index(
            "ix_articles_search_vector",
            "articles",
            ["search_vector"],
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        )
    else:
        op.execute(SQLITE_FTS)
        op.execute("INSERT INTO articles_fts(articles_fts) VALUES ('rebuild')")
        for trigger in SQLITE_TRIGGERS.values():
            op.execute(trigger)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_context().dialect.name == "postgresql":
        op.drop_index("ix_articles_search_vector", table_name="articles")
        op.drop_column("articles", "search_vector")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS articles_fts")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), not a batch copy of the table: a
    # copy would drop and recreate articles, and with foreign keys on, dropping it would
    # set every alert's article to NULL.
    op.drop_column("articles", "summary_terms")
    op.drop_column("articles", "title_terms")
