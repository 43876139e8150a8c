"""Console fixtures: the complaints world (two OPDs, their heads and admins, an engineer, a supervisor) on SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.complaints.conftest import _cheap_argon2  # noqa: F401  (an autouse fixture, shared)
from tests.complaints.world import World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("console")
    built = build_world(f"sqlite:///{data_dir / 'app.sqlite3'}", data_dir)
    yield built
    built.ctx.engine.dispose()
