"""A throwaway PostgreSQL cluster for tests and benchmarks.

    with PostgresCluster() as cluster:
        url = cluster.create_database("baton_test")
        # postgresql+asyncpg://baton@127.0.0.1:PORT/baton_test

Or, for a scratch server from a shell: ``python -m tests.support.postgres``.

The cluster lives in a temporary directory, listens on a free loopback port, trusts every local
connection (superuser ``baton``, no password), and is gone after ``stop()``, which also runs at
interpreter exit so that an interrupted test run leaves no server behind. PostgreSQL refuses to
run as root, so under root the server runs as the ``postgres`` OS user.

By default durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the data
is thrown away anyway. A benchmark wants ``durable=True`` to measure what production pays.

Databases are created and dropped over one open autocommit connection (psycopg) rather than a
``psql`` process per statement, which cost a fork and a connection each: a test run makes two
statements per test. ``drop_database(name, wait=False)`` hands the drop to a background thread
with a connection of its own, so a test's teardown does not wait for the files to go, and
``copies(template)`` keeps a copy or two of a template made ahead by another: a copy costs the
server most of a CPU-tenth, which it now spends while the test before runs.
"""

from __future__ import annotations

import argparse
import atexit
import os
import pwd
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

__all__ = ["PostgresCluster", "PostgresNotAvailable", "TemplateCopies", "find_bindir", "postgres_available"]

SUPERUSER = "baton"
HOST = "127.0.0.1"
OS_USER_WHEN_ROOT = "postgres"

_INSTALL_HINT = (
    "install the `postgresql` package (Debian/Ubuntu: `apt-get install postgresql`, "
    "Fedora: `dnf install postgresql-server`, macOS: `brew install postgresql@15`)"
)
_SEARCHED = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu: not on PATH by default
    "/usr/pgsql-*/bin",  # PGDG RPMs
    "/opt/homebrew/opt/postgresql*/bin",
    "/usr/local/opt/postgresql*/bin",
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SETTING = re.compile(r"[a-z_][a-z0-9_.]*")
_FAST_NOT_DURABLE = {"fsync": False, "synchronous_commit": False, "full_page_writes": False}
_START_ATTEMPTS = 5  # another process may take the free port before the server binds it


class PostgresNotAvailable(RuntimeError):
    """PostgreSQL's server binaries, or a user to run them as, are missing."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then the usual places."""
    candidates = []
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    for pattern in _SEARCHED:
        root = Path("/")
        candidates.extend(sorted(root.glob(pattern.lstrip("/")), key=_version_key, reverse=True))
    for candidate in candidates:
        if _has_server_binaries(candidate):
            return candidate
    return None


def postgres_available() -> bool:
    """Whether a ``PostgresCluster`` can be started on this machine."""
    if find_bindir() is None:
        return False
    return os.geteuid() != 0 or _os_user_exists(OS_USER_WHEN_ROOT)


class PostgresCluster:
    """A private PostgreSQL server in a temporary directory; a context manager."""

    def __init__(
        self,
        *,
        durable: bool = False,
        extra_settings: Mapping[str, object] | None = None,
        bindir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.durable = durable
        self.extra_settings = dict(extra_settings or {})
        self.host = HOST
        self.user = SUPERUSER
        self.port: int | None = None
        self.base_dir: Path | None = None
        self._bindir = Path(bindir) if bindir is not None else None
        self._owner_pid: int | None = None
        self._connection: Any = None  # psycopg.Connection to "postgres", opened on first use
        self._lock = threading.Lock()
        self._drops: queue.Queue[str | None] | None = None
        self._dropper: threading.Thread | None = None
        self._copies: list[TemplateCopies] = []

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Create and start the cluster; returns self. Does nothing if already started."""
        if self.base_dir is not None:
            return self
        bindir = self._bindir or find_bindir()
        if bindir is None or not _has_server_binaries(bindir):
            where = f"in {bindir}" if bindir else "on PATH or in " + ", ".join(_SEARCHED)
            raise PostgresNotAvailable(
                f"PostgreSQL server binaries (initdb, pg_ctl) not found {where}: {_INSTALL_HINT}"
            )
        self._bindir = bindir
        if os.geteuid() == 0 and not _os_user_exists(OS_USER_WHEN_ROOT):
            raise PostgresNotAvailable(
                "running as root, and PostgreSQL refuses to run as root: create a "
                f"`{OS_USER_WHEN_ROOT}` user to run it as ({_INSTALL_HINT} does that), "
                "or run as an ordinary user"
            )

        self.base_dir = Path(tempfile.mkdtemp(prefix="baton-pg-"))
        self._owner_pid = os.getpid()
        atexit.register(self._stop_at_exit)
        try:
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server at once (no checkpoint) and delete its directory. Idempotent."""
        atexit.unregister(self._stop_at_exit)
        if self.base_dir is None:
            return
        self._close_connections()
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run_as_server_user(
                    [self._bin("pg_ctl"), "stop", "-D", self.data_dir, "-m", "immediate", "-w"],
                    check=False,
                )
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
            self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port {self.port}" if self.port else "stopped"
        return f"<PostgresCluster {state}>"

    # --- databases ----------------------------------------------------------------------

    def dsn(self, name: str = "postgres", driver: str | None = "asyncpg") -> str:
        """A URL for database ``name``: SQLAlchemy's ``postgresql+DRIVER://`` or, with
        ``driver=None``, a plain libpq ``postgresql://`` one."""
        if self.port is None:
            raise RuntimeError("the PostgreSQL cluster is not running: call start() first")
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{_checked_name(name)}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (optionally a copy of ``template``); return its asyncpg URL."""
        sql = f'CREATE DATABASE "{_checked_name(name)}"'
        if template is not None:
            sql += f' TEMPLATE "{_checked_name(template)}"'
        self._execute(sql)
        return self.dsn(name)

    def copies(self, template: str, *, prefix: str, ahead: int = 2) -> TemplateCopies:
        """Copies of ``template`` named ``{prefix}_N``, made ``ahead`` at a time in the background."""
        copies = TemplateCopies(self, template, prefix=prefix, ahead=ahead)
        self._copies.append(copies)
        return copies

    def drop_database(self, name: str, *, wait: bool = True) -> None:
        """Drop database ``name`` if it exists, disconnecting whoever is still connected.

        With ``wait=False`` the drop happens on a background thread; ``stop()`` waits for it.
        """
        sql = f'DROP DATABASE IF EXISTS "{_checked_name(name)}" WITH (FORCE)'
        if wait:
            self._execute(sql)
            return
        if self._drops is None:
            self._drops = queue.Queue()
            self._dropper = threading.Thread(target=self._drop_in_background, args=(self._drops,),
                                             name="postgres-drops", daemon=True)
            self._dropper.start()
        self._drops.put(sql)

    # --- paths --------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base() / "socket"

    @property
    def log_path(self) -> Path:
        return self._base() / "postgres.log"

    # --- internals ----------------------------------------------------------------------

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("the PostgreSQL cluster is not running: call start() first")
        return self.base_dir

    def _bin(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            account = pwd.getpwnam(OS_USER_WHEN_ROOT)
            for path in (self._base(), self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run_as_server_user(
            [
                self._bin("initdb"),
                "-D", self.data_dir,
                "-A", "trust",
                "-U", self.user,
                "--encoding", "UTF8",
                "--locale", "C",
                "--no-sync",  # a throwaway cluster; the server's own fsync is a setting
            ]
        )  # fmt: skip
        settings: dict[str, object] = {
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": 300,
        }
        if not self.durable:
            settings.update(_FAST_NOT_DURABLE)
        settings.update(self.extra_settings)
        lines = [f"{_checked_setting(key)} = {_conf_value(value)}" for key, value in settings.items()]
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tests.support.postgres\n" + "\n".join(lines) + "\n")

    def _start_server(self) -> None:
        for _ in range(_START_ATTEMPTS):
            port = _free_port()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            result = self._run_as_server_user(
                [
                    self._bin("pg_ctl"), "start", "-w", "-t", "60",
                    "-D", self.data_dir, "-l", self.log_path, "-o", f"-p {port}",
                ],
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                self.port = port
                return
            log = self._log_since(log_start)
            if "could not bind" not in log and "already in use" not in log:
                raise RuntimeError(f"PostgreSQL did not start:\n{result.stdout}{result.stderr}{log}")
        raise RuntimeError(f"PostgreSQL found no free port in {_START_ATTEMPTS} attempts")

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                log.seek(offset)
                return log.read()
        except FileNotFoundError:
            return ""

    def _execute(self, sql: str) -> None:
        try:
            import psycopg
        except ImportError:  # the benchmarks' environment: one psql process per statement
            self._psql(sql)
            return
        with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self.dsn(driver=None), autocommit=True)
            try:
                self._connection.execute(sql)
            except psycopg.Error as error:
                raise RuntimeError(f"{sql!r} failed: {str(error).strip()}") from None

    def _drop_in_background(self, drops: queue.Queue[str | None]) -> None:
        # Its own connection: a drop must not hold the lock a create is waiting for.
        connection = None
        while (sql := drops.get()) is not None:
            try:
                try:
                    import psycopg
                except ImportError:
                    self._psql(sql)
                    continue
                if connection is None:
                    connection = psycopg.connect(self.dsn(driver=None), autocommit=True)
                connection.execute(sql)
            except Exception:  # noqa: BLE001 - a database left behind goes with the cluster
                pass
        if connection is not None:
            connection.close()

    def _close_connections(self) -> None:
        for copies in self._copies:
            copies.close()
        self._copies.clear()
        if self._drops is not None and self._dropper is not None:
            self._drops.put(None)
            self._dropper.join(timeout=60)
            self._drops = self._dropper = None
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _psql(self, sql: str) -> None:
        psql = self._bin("psql") if (self._bindir and (self._bindir / "psql").exists()) else "psql"
        command = [
            psql, "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres", "-c", sql,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=_clean_env(), check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{sql!r} failed: {result.stderr.strip()}")

    def _run_as_server_user(self, command: list[object], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam(OS_USER_WHEN_ROOT)
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        result = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            env=_clean_env(),
            cwd=self._base(),  # the server user may not be allowed into our working directory
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{Path(str(command[0])).name} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def _stop_at_exit(self) -> None:
        # A forked child inherits atexit handlers; only the process that started the server
        # may stop it.
        if os.getpid() == self._owner_pid:
            self.stop()


class TemplateCopies:
    """Fresh copies of one template database, made ahead of need by a background thread.

        copies = cluster.copies("baton_template", prefix="t")
        name = copies.take()  # usually made already; each copy is handed out once
        url = cluster.dsn(name)

    Nothing may connect to the template while copies are being made (PostgreSQL refuses to copy
    a database in use), so finish the template before the first ``take()``.
    """

    def __init__(self, cluster: PostgresCluster, template: str, *, prefix: str, ahead: int = 2) -> None:
        self.cluster = cluster
        self.template = _checked_name(template)
        self.prefix = prefix
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=max(1, ahead))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._make, name=f"postgres-copies-{template}", daemon=True)
        self._thread.start()

    def take(self, *, timeout: float = 120.0) -> str:
        """The name of a copy nobody else was given."""
        made = self._ready.get(timeout=timeout)
        if isinstance(made, BaseException):
            raise RuntimeError(f"copying {self.template!r} failed: {made}") from made
        return made

    def close(self) -> None:
        """Stop making copies; the ones made and not taken go with the cluster."""
        self._closed.set()
        while self._thread.is_alive():
            try:  # unblock a put() on a full queue
                self._ready.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def _make(self) -> None:
        import psycopg

        connection = None
        n = 0
        try:
            connection = psycopg.connect(self.cluster.dsn(driver=None), autocommit=True)
            while not self._closed.is_set():
                n += 1
                name = _checked_name(f"{self.prefix}_{n}")
                connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                while not self._closed.is_set():
                    try:
                        self._ready.put(name, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as error:  # noqa: BLE001 - handed to the next take()
            while not self._closed.is_set():
                try:
                    self._ready.put(error, timeout=0.1)
                    break
                except queue.Full:
                    continue
        finally:
            if connection is not None:
                connection.close()


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl"))


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", str(path)))


def _os_user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _clean_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGHOST... from the developer's shell must not redirect us elsewhere;
    # LC_ALL=C keeps server messages in English for the error checks above.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _checked_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"database names here are letters, digits and _, not {name!r}")
    return name


def _checked_setting(key: str) -> str:
    if not _SETTING.fullmatch(key):
        raise ValueError(f"not a PostgreSQL setting name: {key!r}")
    return key


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def main(argv: list[str] | None = None) -> int:
    """Start a cluster, print its URL, and keep it until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.postgres",
        description="Run a throwaway PostgreSQL server until Ctrl-C.",
    )
    parser.add_argument("--database", default="baton", help="database to create (default: baton)")
    parser.add_argument("--durable", action="store_true", help="keep fsync and friends on")
    parser.add_argument(
        "-c", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="an extra server setting; repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    extra = dict(setting.split("=", 1) for setting in args.settings)

    # SIGTERM and SIGHUP unwind through the with block like Ctrl-C does.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: sys.exit(0))
    try:
        with PostgresCluster(durable=args.durable, extra_settings=extra) as cluster:
            url = cluster.create_database(args.database)
            print(url, flush=True)
            print(f"  export BATON_DATABASE_URL={url}", file=sys.stderr)
            print(f"  psql {cluster.dsn(args.database, driver=None)}", file=sys.stderr)
            print("Ctrl-C stops the server and deletes its data.", file=sys.stderr, flush=True)
            signal.pause()
    except KeyboardInterrupt:
        pass
    except PostgresNotAvailable as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
