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


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _run(engine, lambda cfg: command.downgrade(cfg, revision))


async def _run(engine: AsyncEngine, action) -> None:  # type: ignore[no-untyped-def]
    def inner(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)

    async with engine.begin() as connection:
        await connection.run_sync(inner)


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
