"""Fixtures of the write-path tests (the ORM path, the routine path, group commit)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def database_copies(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A factory of two fresh copies of the migrated template, per example."""
    made: list[str] = []

    def two() -> tuple[str, str]:
        urls = []
        for _ in range(2):
            if request.param == "sqlite":
                path = tmp_path / f"{uuid.uuid4().hex}.db"
                shutil.copy(request.getfixturevalue("sqlite_template"), path)
                urls.append(f"sqlite+aiosqlite:///{path}")
            else:
                cluster = request.getfixturevalue("pg_cluster")
                name = f"w{os.getpid()}_{uuid.uuid4().hex[:10]}"
                urls.append(cluster.create_database(name, template=request.getfixturevalue("pg_template")))
                made.append(name)
        return urls[0], urls[1]

    yield two
    if made:
        cluster = request.getfixturevalue("pg_cluster")
        for name in made:
            cluster.drop_database(name)
