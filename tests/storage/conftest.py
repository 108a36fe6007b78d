"""Storage fixtures: a database with no schema at all, for the tests of the migrations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, _asyncpg_url
from tests.postgres import execute_as_admin


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def blank_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database with no schema at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need NEWSBOT_TEST_POSTGRES_URL")
    name = f"newsbot_blank_{uuid.uuid4().hex[:12]}"
    await execute_as_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(_asyncpg_url(POSTGRES_URL)).set(database=name).render_as_string(False)
    finally:
        await execute_as_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
