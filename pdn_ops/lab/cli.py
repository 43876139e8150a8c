"""``pdn-ops lab``: run the lab in the foreground (``up``), break it (``fault``), look at it (``status``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from pdn_ops.lab.faults import FAULTS


def default_dir() -> Path:
    return Path(os.environ.get("PDN_OPS_DATA_DIR") or Path.cwd() / "data") / "lab"


_dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
                           help="The lab's directory (default: $PDN_OPS_DATA_DIR/lab, else ./data/lab).")


@click.group("lab")
def lab() -> None:
    """The lab: a Proxmox VE cluster on loopback whose VMs really break and really come back."""


def quiet_access_log() -> None:
    """One INFO line per API request would bury what matters in the foreground output."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def wait_for_signal() -> int:
    """Block until SIGINT or SIGTERM; returns the signal number."""
    received: list[int] = []
    done = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        done.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(1.0):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return received[0]


@lab.command("up")
@click.option("--nodes", default=1, show_default=True, type=click.IntRange(1, 32))
@click.option("--vms", default=4, show_default=True, type=click.IntRange(0, 100_000))
@click.option("--sites", default=3, show_default=True, type=click.IntRange(0, 1000),
              help="How many of the guests serve an OPD site (every second one over HTTPS too).")
@click.option("--guests", default=None, type=click.IntRange(0, 1000),
              help="How many VMs get a real guest (sshd, site); default: every VM, at most 50.")
@click.option("--time-scale", default=0.2, show_default=True, type=click.FloatRange(0.0, 10.0),
              help="Real seconds per Proxmox second (tasks, boot delay).")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the first line of stdout.")
def up(nodes: int, vms: int, sites: int, guests: int | None, time_scale: float, directory: Path | None,
       as_json: bool) -> None:
    """Run a lab in the foreground until Ctrl-C (or SIGTERM); write its inventory file."""
    from pdn_ops.lab.errors import LabError
    from pdn_ops.lab.lab import Lab

    directory = directory or default_dir()
    quiet_access_log()
    try:
        running = Lab.start(directory, nodes=nodes, vms=vms, sites=sites, time_scale=time_scale,
                            guests=min(vms, 50) if guests is None else guests)
    except (LabError, OSError) as exc:
        raise click.ClickException(f"the lab could not start: {exc}") from exc
    try:
        summary = running.summary()
        if as_json:
            click.echo(json.dumps(summary))
        else:
            click.echo(f"Proxmox API   {summary['api_url']}")
            click.echo(f"token id      {summary['token_id']}")
            click.echo(f"token secret  {summary['token_secret']}")
            click.echo(f"fingerprint   {summary['fingerprint']}")
            click.echo(f"inventory     {summary['inventory']}")
            click.echo(f"lab CA        {running.ca_file}")
            for guest in running.guests.values():
                urls = " ".join(guest.site_urls) or "-"
                click.echo(f"  VM {guest.vmid}  ssh {running.user}@{guest.address}:{guest.ssh_port}  sites {urls}")
            click.echo(f"Break things: pdn-ops lab fault --dir {directory} crash_service vmid=101")
            click.echo("Ctrl-C stops the lab.")
        sys.stdout.flush()
        wait_for_signal()
    finally:
        running.stop()


def _parse_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="ARGS")
        args[key.replace("-", "_")] = value
    return args


@lab.command("fault")
@_dir_option
@click.option("--list", "list_faults", is_flag=True, help="List the faults and their parameters.")
@click.argument("name", required=False)
@click.argument("args", nargs=-1)
def fault(directory: Path | None, list_faults: bool, name: str | None, args: tuple[str, ...]) -> None:
    """Apply fault NAME with KEY=VALUE arguments to the running lab, e.g. ``crash_service vmid=101``."""
    from pdn_ops.lab.control import send

    if list_faults or not name:
        for fault_name, help_text in FAULTS.items():
            click.echo(f"{fault_name:<24} {help_text}")
        return
    try:
        answer = send(directory or default_dir(), name.replace("-", "_"), _parse_args(args))
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
    if not answer.get("ok"):
        raise click.ClickException(str(answer.get("error", "the lab refused the fault")))
    result = answer.get("result")
    click.echo(f"{name}: done" + (f" ({result})" if result is not None else ""))


@lab.command("status")
@_dir_option
def status(directory: Path | None) -> None:
    """Show the running lab's guests as JSON (the token secret is not shown)."""
    from pdn_ops.lab.control import send

    try:
        answer = send(directory or default_dir(), "status")
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(answer.get("result"), indent=2))
