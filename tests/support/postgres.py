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
"""

from __future__ import annotations

import argparse
import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Self

__all__ = ["PostgresCluster", "PostgresNotAvailable", "find_bindir", "postgres_available"]

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
        self._psql(sql)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting whoever is still connected."""
        self._psql(f'DROP DATABASE IF EXISTS "{_checked_name(name)}" WITH (FORCE)')

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
