"""Database kernel: the declarative base, column types, and engine/session factories.

SQLite (embedded) and PostgreSQL (at scale) run the same models. On SQLite every transaction
starts with ``BEGIN IMMEDIATE`` so that two writers never deadlock on a read-to-write upgrade.

What a session carries (``session.info``, set once by ``make_sessionmaker``): whoever makes the
sessionmaker (the web ``Runtime``, ``baton worker``, a CLI command) hands it its ``Settings`` and
its ``Caches``, and domain code reads them from the session it was given, never from the
environment or a module global:

- ``settings_of(session)``: the runtime's ``Settings`` (raises if the sessionmaker was made without);
- ``caches_of(session)``: the runtime's ``kernel.caches.Caches`` (every sessionmaker has one);
- other keys for one service's needs, such as the webhook allow-list (``partners.webhook_urls``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, MetaData, bindparam, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, configure_mappers
from sqlalchemy.types import TypeDecorator

from kernel.caches import Caches
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


_SETTINGS = "baton.settings"
_CACHES = "baton.caches"


def make_sessionmaker(
    engine: AsyncEngine,
    *,
    settings: Settings | None = None,
    caches: Caches | None = None,
    info: dict[str, Any] | None = None,
) -> async_sessionmaker[AsyncSession]:
    """Sessions that carry ``settings``, ``caches`` (new ones if not given) and ``info`` (see the module doc)."""
    carried = {**(info or {}), _CACHES: caches if caches is not None else Caches()}
    if settings is not None:
        carried[_SETTINGS] = settings
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=carried)


def is_postgres(session: AsyncSession) -> bool:
    """Whether the session talks to PostgreSQL (else SQLite): for the few statements that differ."""
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def skip_locked(session: AsyncSession, query: Any, of: Any = None) -> Any:
    """A sweep's claim: ``FOR UPDATE [OF ...] SKIP LOCKED`` on PostgreSQL; SQLite serializes writers already.

    Lock every table whose columns the query filters on (a party, handoff, claim or deadline as
    well as its case): when another worker commits a row after this statement's snapshot but before
    it is locked here, PostgreSQL re-checks the WHERE clause only against the newest versions of the
    *locked* rows. With only the case locked, a stale party still looked due and was flagged twice.
    """
    if not is_postgres(session):
        return query
    return query.with_for_update(of=of, skip_locked=True) if of is not None else query.with_for_update(skip_locked=True)


def settings_of(session: AsyncSession) -> Settings:
    """The settings of the runtime whose sessionmaker made ``session``."""
    settings = session.info.get(_SETTINGS)
    if settings is None:
        raise LookupError("This session carries no settings: make its sessionmaker with "
                          "make_sessionmaker(engine, settings=...).")
    return settings


def caches_of(session: AsyncSession) -> Caches:
    """The caches of the runtime whose sessionmaker made ``session``."""
    caches = session.info.get(_CACHES)
    if caches is None:
        raise LookupError("This session carries no caches: make its sessionmaker with make_sessionmaker(engine).")
    return caches


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
        asyncpg = dialect is not None and dialect.name == "postgresql" and dialect.driver == "asyncpg"
        if asyncpg and self._asyncpg is not None:
            sql, names = self._asyncpg
            values = tuple(params[n] for n in names)
            connection = _begun_driver_connection(session)
            if connection is None:
                # The transaction's first statement: through SQLAlchemy's connection, which begins
                # the transaction, but as driver SQL (no compilation, no ORM session work).
                connection = await session.connection()
                result = await connection.exec_driver_sql(sql, values)
                await _remember_driver_connection(session, connection)
                return list(result.mappings()) if result.returns_rows else []
            try:
                return list(await connection.fetch(sql, *values))
            except Exception as exc:  # the same error SQLAlchemy would raise, for callers that catch it
                raise _translated(exc, sql, params) from exc
        scripts = self._pg if dialect is not None and dialect.name == "postgresql" else self._generic
        result = None
        for clause in scripts:
            result = await session.execute(clause, params)
        assert result is not None
        if asyncpg:
            await _remember_driver_connection(session, await session.connection())
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


_DRIVER = "baton.asyncpg"


def _begun_driver_connection(session: AsyncSession) -> Any | None:
    """The asyncpg connection under the session's transaction, once SQLAlchemy has begun it; else None.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement it runs. So the
    first ``Statement`` of a transaction runs through the session (which begins it, through
    public API only), and the following ones straight on the driver connection, inside that
    transaction; the session's commit or rollback ends it. A new transaction starts over.
    """
    remembered = session.info.get(_DRIVER)
    if remembered is not None and remembered[0] is session.sync_session.get_transaction():
        return remembered[1]
    return None


async def _remember_driver_connection(session: AsyncSession, connection: Any) -> None:
    # PoolProxiedConnection.driver_connection: SQLAlchemy's documented way to the driver's own connection.
    raw = await connection.get_raw_connection()
    session.info[_DRIVER] = (session.sync_session.get_transaction(), raw.driver_connection)


def _translated(exc: Exception, sql: str, params: dict[str, Any]) -> Exception:
    from asyncpg import exceptions as pg_errors

    if isinstance(exc, pg_errors.IntegrityConstraintViolationError):
        return IntegrityError(sql, params, exc)
    return exc


# ---------------------------------------------------------------- statements built from a Table
#
# Hot-path SQL is written from the table definitions, never as a second copy of a column list:
# a column added to a model is read, inserted and typed by these builders without anyone
# touching the statement. Parameters and result columns are prefixed (``e_seq``, ``c_status``)
# so that one statement can read or write several tables.


def _needs_type(column: Any, *, result: bool) -> bool:
    """Columns whose values SQLAlchemy must convert on the text path: times both ways; booleans and
    JSON only coming back (JSON goes in as text already, see ``RowPlan.values``)."""
    kinds = (UTCDateTime, Boolean, JSON) if result else (UTCDateTime,)
    return isinstance(column.type, kinds)


def select_list(table: Any, *, alias: str, prefix: str) -> str:
    """``alias.col AS prefixcol, ...`` for every column of ``table``."""
    return ", ".join(f"{alias}.{c.name} AS {prefix}{c.name}" for c in table.columns)


def insert_sql(table: Any, *, prefix: str, exclude: tuple[str, ...] = ("id",)) -> str:
    names = [c.name for c in table.columns if c.name not in exclude]
    return (f"INSERT INTO {table.name} ({', '.join(names)}) "
            f"VALUES ({', '.join(f':{prefix}{n}' for n in names)})")


def _known(table: Any, names: tuple[str, ...]) -> None:
    for name in names:
        table.columns[name]  # KeyError for a column the table does not have


def update_sql(table: Any, columns: tuple[str, ...], *, prefix: str, key: str = "id") -> str:
    _known(table, (*columns, key))
    sets = ", ".join(f"{n} = :{prefix}{n}" for n in columns)
    return f"UPDATE {table.name} SET {sets} WHERE {key} = :{prefix}{key}"


# Many rows in one statement (group commit, ``tracker.groupcommit``): on PostgreSQL the rows travel as
# one JSON array and ``json_populate_recordset`` turns it into rows of the table's own type, so
# every column is converted by PostgreSQL with the column's type, and one statement writes them all.


def insert_json_sql(table: Any, *, param: str, exclude: tuple[str, ...] = ("id",)) -> str:
    names = ", ".join(c.name for c in table.columns if c.name not in exclude)
    return (f"INSERT INTO {table.name} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{table.name}, CAST(:{param} AS json))")


def update_json_sql(table: Any, columns: tuple[str, ...], *, param: str, key: str = "id") -> str:
    _known(table, (*columns, key))
    sets = ", ".join(f"{n} = r.{n}" for n in columns)
    return (f"UPDATE {table.name} AS t SET {sets} "
            f"FROM json_populate_recordset(NULL::{table.name}, CAST(:{param} AS json)) AS r WHERE t.{key} = r.{key}")


def column_types(table: Any, *, prefix: str, columns: tuple[str, ...] | None = None,
                 result: bool = False) -> dict[str, Any]:
    """``Statement`` types for the prefixed parameters (or, ``result=True``, result columns) that need conversion."""
    return {f"{prefix}{c.name}": c.type for c in table.columns
            if (columns is None or c.name in columns) and _needs_type(c, result=result)}


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class RowPlan:
    """Which columns of a table map to which prefixed parameters or result keys, worked out once.

    ``values(obj)`` gives the parameters from an object's attributes (JSON columns as text:
    asyncpg takes JSON as text); ``load(row)`` builds a detached instance with every planned
    column set from a result row (JSON text decoded). Hot paths build their plans at import.
    """

    def __init__(self, model: type[Any], *, prefix: str, columns: tuple[str, ...] | None = None,
                 exclude: tuple[str, ...] = ()) -> None:
        table = model.__table__
        chosen = [c for c in table.columns
                  if (c.name in columns if columns is not None else c.name not in exclude)]
        self.model = model
        self._fields = tuple((c.name, f"{prefix}{c.name}", isinstance(c.type, JSON)) for c in chosen)

    def values(self, obj: Any) -> dict[str, Any]:
        values = {}
        for name, key, is_json in self._fields:
            value = getattr(obj, name)
            if is_json and value is not None:
                value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            values[key] = value
        return values

    def records(self, objs: Any) -> str:
        """The planned columns of ``objs`` as one JSON array of objects named by column, for
        ``insert_json_sql`` / ``update_json_sql`` (times as ISO 8601, JSON columns nested)."""
        rows = [{name: getattr(obj, name) for name, _, _ in self._fields} for obj in objs]
        return json.dumps(rows, separators=(",", ":"), ensure_ascii=False, default=_iso)

    def load(self, row: Any) -> Any:
        # As the ORM itself loads a row: a new instance with its state, values set in its __dict__
        # (no attribute events), about a third of the cost of the constructor for a wide row.
        mapper = self.model.__mapper__
        if not mapper.configured:
            configure_mappers()  # what the ORM does before its first query; attribute writes need it
        instance = mapper.class_manager.new_instance()
        values = instance.__dict__
        for name, key, is_json in self._fields:
            value = row[key]
            values[name] = json.loads(value) if is_json and isinstance(value, str) else value
        return instance
