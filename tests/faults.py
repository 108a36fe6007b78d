"""Real database faults for tests: a trigger makes the database itself refuse a write, as a
full disk or a broken constraint would, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from storage.db import Database

REFUSAL = "disk quota exceeded"
# Triggers outlive the test on PostgreSQL (the database is shared by the run): dropped after.
_SQLITE = [
    "CREATE TRIGGER refuse_articles BEFORE INSERT ON articles "
    "WHEN instr(NEW.title, '{word}') > 0 BEGIN SELECT RAISE(ABORT, '{refusal}'); END"
]
_POSTGRES = [
    "CREATE FUNCTION refuse_articles() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF strpos(NEW.title, '{word}') > 0 THEN RAISE EXCEPTION '{refusal}'; END IF; "
    "RETURN NEW; END $$",
    "CREATE TRIGGER refuse_articles BEFORE INSERT ON articles "
    "FOR EACH ROW EXECUTE FUNCTION refuse_articles()",
]
_DROP_SQLITE = ["DROP TRIGGER IF EXISTS refuse_articles"]
_DROP_POSTGRES = [
    "DROP TRIGGER IF EXISTS refuse_articles ON articles",
    "DROP FUNCTION IF EXISTS refuse_articles()",
]


@asynccontextmanager
async def refusing_articles(db: Database, word: str) -> AsyncIterator[None]:
    """Inside, the database refuses to store any article whose title contains ``word``
    (plain letters only), failing the whole transaction with ``REFUSAL``."""
    create, drop = (_SQLITE, _DROP_SQLITE) if db.is_sqlite else (_POSTGRES, _DROP_POSTGRES)
    async with db.engine.begin() as connection:
        for statement in create:
            await connection.execute(text(statement.format(word=word, refusal=REFUSAL)))
    try:
        yield
    finally:
        async with db.engine.begin() as connection:
            for statement in drop:
                await connection.execute(text(statement))
