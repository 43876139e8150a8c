"""What the ``pdn-ops`` subcommands share: settings with every problem named, and the database URL option."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from pdn_ops.app.runtime import Runtime, build_runtime
from pdn_ops.core.errors import ConfigError, DatabaseNotReady
from pdn_ops.core.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def settings_from(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def runtime_from(settings: Settings) -> Runtime:
    """The process's one runtime; a database behind the code or a bad setting is a clear error, not a traceback."""
    try:
        return build_runtime(settings)
    except (ConfigError, DatabaseNotReady) as exc:
        raise click.ClickException(str(exc)) from None


def db_url_option(func: F) -> F:
    return click.option("--database-url", envvar="PDN_OPS_DATABASE_URL", default=None,
                        help="SQLAlchemy URL; default: a SQLite file in the data directory.")(func)
