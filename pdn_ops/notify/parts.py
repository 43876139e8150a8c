"""What the notification feature keeps for the app's lifetime."""

from __future__ import annotations

from dataclasses import dataclass

from pdn_ops.notify.worker import NotifyRuntime


@dataclass(eq=False)
class NotifyParts:
    # What the in-process worker delivers with (providers, mailbox, retry policy); None while no worker runs here
    # (PDN_OPS_NOTIFY_WORKER=0, or `pdn-ops notify worker` runs as its own process).
    delivery: NotifyRuntime | None = None
