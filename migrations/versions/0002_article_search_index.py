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
from alembic import context, op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_BATCH = 2_000

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
    # Before the index exists: filling the terms then costs one pass, not one per trigger.
    if not context.is_offline_mode():
        _backfill_terms(op.get_bind())
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


def _backfill_terms(bind: sa.Connection) -> None:
    # The engine lives in bot/; migrations may use it (storage may not), and the index must
    # hold exactly what ingestion will write from now on.
    from bot.text import index_text

    articles = sa.table(
        "articles",
        sa.column("id", sa.Integer()),
        sa.column("title", sa.Text()),
        sa.column("summary", sa.Text()),
        sa.column("title_terms", sa.Text()),
        sa.column("summary_terms", sa.Text()),
    )
    fill = (
        sa.update(articles)
        .where(articles.c.id == sa.bindparam("row_id"))
        .values(title_terms=sa.bindparam("new_title"), summary_terms=sa.bindparam("new_summary"))
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(articles.c.id, articles.c.title, articles.c.summary)
            .where(articles.c.id > last)
            .order_by(articles.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            fill,
            [
                {
                    "row_id": row.id,
                    "new_title": index_text(row.title or ""),
                    "new_summary": index_text(row.summary or ""),
                }
                for row in rows
            ],
        )
        last = rows[-1].id
