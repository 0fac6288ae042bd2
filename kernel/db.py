"""Database kernel: the declarative base, column types, and engine/session factories.

SQLite (embedded) and PostgreSQL (at scale) run the same models. On SQLite every transaction
starts with ``BEGIN IMMEDIATE`` so that two writers never deadlock on a read-to-write upgrade.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, bindparam, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from kernel.clock import UTC
from kernel.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware on the way in and out, on SQLite (which drops offsets) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
BigID = BigInteger().with_variant(Integer(), "sqlite")


def make_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    url = settings.database_url
    if settings.is_sqlite:
        path = settings.sqlite_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **overrides)
        _tune_sqlite(engine)
        return engine
    options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": 0,
        "pool_pre_ping": False,
    }
    if url.startswith("postgresql+asyncpg"):
        # Statements are prepared per connection and reused: asyncpg's cache does it.
        options["connect_args"] = {"server_settings": {"application_name": "baton"}}
    options.update(overrides)
    return create_async_engine(url, **options)


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's implicit deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: AsyncEngine, *, info: dict[str, Any] | None = None) -> async_sessionmaker[AsyncSession]:
    """``info`` rides on every session (``session.info``): process settings a service needs, such as
    the webhook allow-list, without every route passing them."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)


# ---------------------------------------------------------------- hot-path statements

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Statement:
    """A hot-path SQL statement written once, run without SQLAlchemy's per-statement work on asyncpg.

    On PostgreSQL over asyncpg it runs on the session's own connection, inside its transaction,
    through asyncpg's prepared-statement cache: about 65 µs of CPU per round trip on the
    benchmark machine against 150–240 µs through the session, and signed updates are bound by
    the server's CPU (README, Performance). Elsewhere (SQLite, psycopg) it runs as
    ``sqlalchemy.text``. Rows come back as mappings (column name to value) on both paths.

    - ``sql`` uses ``:name`` parameters; ``pg`` replaces it on PostgreSQL when the best form
      differs there (locks, one statement with CTEs for what SQLite runs as several).
      ``sql`` may be several statements run in order; the last one's rows are returned.
    - Parameters are plain values: str, int, bool, None, timezone-aware datetimes, and JSON
      as text. ``types`` names those SQLAlchemy must convert on the ``text`` path (datetimes
      for SQLite) and result columns to convert back.
    """

    def __init__(self, sql: str | tuple[str, ...], *, pg: str | None = None, **types: Any) -> None:
        scripts = (sql,) if isinstance(sql, str) else sql
        self._generic = tuple(_typed(s, types) for s in scripts)
        self._pg = (_typed(pg, types),) if pg is not None else self._generic
        source = pg if pg is not None else scripts[-1] if len(scripts) == 1 else None
        self._asyncpg: tuple[str, tuple[str, ...]] | None = _positional(source) if source is not None else None

    async def rows(self, session: AsyncSession, params: dict[str, Any]) -> list[Any]:
        dialect = session.bind.dialect if session.bind is not None else None
        if dialect is not None and dialect.name == "postgresql":
            if dialect.driver == "asyncpg" and self._asyncpg is not None:
                sql, names = self._asyncpg
                connection = await _asyncpg_connection(session)
                try:
                    return list(await connection.fetch(sql, *(params[n] for n in names)))
                except Exception as exc:  # the same error SQLAlchemy would raise, for callers that catch it
                    raise _translated(exc, sql, params) from exc
            scripts = self._pg
        else:
            scripts = self._generic
        result = None
        for clause in scripts:
            result = await session.execute(clause, params)
        assert result is not None
        return list(result.mappings()) if result.returns_rows else []

    async def first(self, session: AsyncSession, params: dict[str, Any]) -> Any | None:
        rows = await self.rows(session, params)
        return rows[0] if rows else None


def _typed(sql: str | tuple[str, ...], types: dict[str, Any]) -> Any:
    if isinstance(sql, tuple):
        return tuple(_typed(s, types) for s in sql)
    clause = text(sql)
    used = set(_NAMED.findall(sql))
    binds = [bindparam(name, type_=kind) for name, kind in types.items() if name in used]
    if binds:
        clause = clause.bindparams(*binds)
    returned = {name: kind for name, kind in types.items() if name not in used}
    if returned and re.search(r"\b(SELECT|RETURNING)\b", sql, re.IGNORECASE):
        clause = clause.columns(**returned)
    return clause


def _positional(sql: str) -> tuple[str, tuple[str, ...]]:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


async def _asyncpg_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, with the transaction begun."""
    transaction = session.sync_session.get_transaction()
    cached = session.info.get("_asyncpg")
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1]
    connection = await session.connection()
    adapted = (await connection.get_raw_connection()).dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: send it now,
    # through the adapter, so that its commit and rollback stay the transaction's. This leans on
    # the adapter's private _transaction/_start_transaction (SQLAlchemy is pinned; every
    # PostgreSQL API test and tests/tracker/test_round_trips.py run through here).
    if adapted._transaction is None and adapted.isolation_level != "autocommit":  # type: ignore[union-attr]
        await adapted._start_transaction()  # type: ignore[union-attr]
    driver = adapted.driver_connection  # type: ignore[union-attr]
    session.info["_asyncpg"] = (session.sync_session.get_transaction(), driver)
    return driver


def _translated(exc: Exception, sql: str, params: dict[str, Any]) -> Exception:
    from asyncpg import exceptions as pg_errors

    if isinstance(exc, pg_errors.IntegrityConstraintViolationError):
        return IntegrityError(sql, params, exc)
    return exc
