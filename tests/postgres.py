"""Administering a PostgreSQL server for tests and benchmarks: a database of their own."""

from __future__ import annotations

from sqlalchemy.engine import make_url


async def execute_as_admin(url: str, statement: str) -> None:
    """Run one statement (CREATE DATABASE …) on the server and database ``url`` names."""
    import asyncpg

    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=parsed.database or "postgres",
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
