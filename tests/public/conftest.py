"""The public pages' tests run on the complaint area's world (one migrated database and app per engine)."""

from tests.complaints.conftest import _cheap_argon2, world

__all__ = ["_cheap_argon2", "world"]
