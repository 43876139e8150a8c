"""Prometheus series for notifications, read from the outbox at scrape time (nothing kept in process memory).

    pdn_notifications{channel, status}        messages in the outbox by channel and outcome
    pdn_notify_oldest_undelivered_seconds     age of the oldest message not yet handed to a provider
    pdn_notify_inbound_pending                inbound messages recorded and not yet acted on

The collector is handed a ``snapshot`` callable (``pdn_ops.notify.outbox.snapshot_reader(sessionmaker)``) and is
registered with /metrics by the composition root. Labels are bounded: two
channels times six statuses; no address or user text ever becomes a label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from pdn_ops.core.metric_names import gauge
from pdn_ops.notify.model import Channel, Status

log = logging.getLogger(__name__)


class Snapshot(Protocol):
    @property
    def counts(self) -> dict[tuple[str, str], int]: ...
    @property
    def oldest_undelivered_seconds(self) -> float: ...
    @property
    def inbound_pending(self) -> int: ...


class NotifyCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._snapshot()
        except Exception:  # a scrape must not fail as a whole because the database blinked; say so in the log
            log.exception("notification metrics: cannot read the outbox")
            return
        by_status = gauge("pdn_notifications")
        for channel in Channel:
            for status in Status:
                by_status.add_metric([channel.value, status.value],
                                     snap.counts.get((channel.value, status.value), 0))
        yield by_status
        oldest = gauge("pdn_notify_oldest_undelivered_seconds")
        oldest.add_metric([], snap.oldest_undelivered_seconds)
        pending = gauge("pdn_notify_inbound_pending")
        pending.add_metric([], snap.inbound_pending)
        yield oldest
        yield pending

