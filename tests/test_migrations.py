"""Migrations build the schema from nothing, tear it down again, and agree with the models."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tests.support.postgres import PostgresCluster
from kernel.config import Settings
from kernel.db import Base, make_engine
from tracker.migrate import downgrade, head_revision, upgrade


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"empty_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}")


def _diff(connection) -> list:  # type: ignore[no-untyped-def]
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def _tables(connection) -> set[str]:  # type: ignore[no-untyped-def]
    return set(inspect(connection).get_table_names())


async def test_upgrade_from_empty_matches_the_models_and_downgrade_removes_everything(empty_url: str) -> None:
    engine = make_engine(Settings(database_url=empty_url))
    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            diff = await connection.run_sync(_diff)
            tables = await connection.run_sync(_tables)
            revision = await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
        assert diff == [], f"models and migrations disagree: {diff}"
        assert set(Base.metadata.tables) <= tables
        assert revision == head_revision()

        await downgrade(engine, "base")
        async with engine.connect() as connection:
            left = await connection.run_sync(_tables)
        assert left <= {"alembic_version"}, f"downgrade left tables behind: {left}"

        await upgrade(engine)  # and back up again: downgrades are real, not one-way
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()
