"""Run Alembic from code (``baton migrate``, tests, ``make run``) and seed the built-in case types."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tracker.casetypes import BUILTIN
from kernel.clock import UTC
from tracker.models import CaseType

ROOT = Path(__file__).resolve().parent.parent


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


Revisions = tuple[str | None, str | None]  # the database's revision before and after (None: no schema)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> Revisions:
    """Migrate up to ``revision``; Alembic itself stays quiet (``kernel.logs.QUIET_LIBRARIES``)."""
    return await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> Revisions:
    """Migrate down to ``revision``."""
    return await _run(engine, lambda cfg: command.downgrade(cfg, revision))


def describe(revisions: Revisions) -> str:
    """One line for ``baton migrate``: ``migrated 0004 -> 0005`` or ``database at revision 0005 (up to date)``."""
    before, after = revisions
    if before == after:
        return f"database at revision {after or '(none)'} (up to date)"
    if before is None:
        return f"created the schema at revision {after}"
    return f"migrated {before} -> {after or '(none)'}"


async def _run(engine: AsyncEngine, action) -> Revisions:  # type: ignore[no-untyped-def]
    def inner(connection: Connection) -> Revisions:
        before = current_revision(connection)
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)
        return before, current_revision(connection)

    async with engine.begin() as connection:
        return await connection.run_sync(inner)


async def seed_case_types(session: AsyncSession) -> None:
    """Insert the built-in case types if absent; an admin's later edits are kept."""
    now = dt.datetime.now(UTC)
    for spec in BUILTIN:
        if await session.get(CaseType, spec["code"]) is None:
            session.add(
                CaseType(code=spec["code"], prefix=spec["prefix"], name=spec["name"], definition=spec["definition"],
                         updated_at=now)
            )
    await session.flush()
