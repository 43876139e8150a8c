"""``pdn-ops user ...``: create the first supervisor (or any user) from the command line."""

from __future__ import annotations

import click

from pdn_ops.accounts.model import Role
from pdn_ops.app.cli_options import runtime_from, settings_from


@click.group("user")
def user() -> None:
    """Accounts: OPD heads and admins, Diskominfo engineers and supervisors."""


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.SUPERVISOR.value, show_default=True)
@click.option("--opd", "opd_code", default=None, help="OPD code (required for opd_head and opd_admin).")
@click.option("--name", "display_name", default="", help="Full name shown in the interface.")
@click.option("--database-url", envvar="PDN_OPS_DATABASE_URL", default=None)
@click.password_option("--password", envvar="PDN_OPS_NEW_USER_PASSWORD",
                       help="Prompted (twice) unless PDN_OPS_NEW_USER_PASSWORD is set; never pass it as an argument "
                            "on a shared machine.")
def add(username: str, role: str, opd_code: str | None, display_name: str, database_url: str | None,
        password: str) -> None:
    """Create USERNAME with ROLE (default: supervisor, the first superuser)."""
    from pdn_ops.accounts import service as accounts
    from pdn_ops.core.db.engine import transaction
    from pdn_ops.core.errors import PdnOpsError

    runtime = runtime_from(settings_from(database_url=database_url, demo=True))
    try:
        with transaction(runtime.sessions) as session:
            made = accounts.create_user(session, username=username, password=password, role=Role(role),
                                        opd_code=opd_code, display_name=display_name)
            click.echo(f"created {made.username} ({role}{', ' + opd_code if opd_code else ''})")
    except (PdnOpsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        runtime.engine.dispose()
