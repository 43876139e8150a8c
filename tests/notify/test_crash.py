"""Faults around the send: the process killed (real subprocess, SIGKILL), and send outcomes left unknown.

The guarantee under test (see pdn_ops.notify.outbox): a committed message is never lost; a message
whose acceptance is recorded is never sent again; a message whose outcome is unknown is settled by the
provider's status callback carrying our idempotency key, and sent again only when no callback came within the
grace window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import utcnow
from pdn_ops.notify import outbox as notify_outbox
from pdn_ops.notify.channels.whatsapp import MetaCloudProvider
from pdn_ops.notify.channels.whatsapp_webhook import parse
from pdn_ops.notify.inbound import record_webhook
from pdn_ops.notify.model import Channel, Recipient, Status, StatusUpdate
from pdn_ops.notify.tables import NotifyOutboxRow
from pdn_ops.notify.worker import NotifyRuntime, deliver_due
from tests.notify.conftest import ADMIN_WA, Clock
from tests.notify.fake_graph import TOKEN, FakeGraph, signed

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from pdn_ops.app.cli import main; main()"]
PARAMS = {"number": "PDN-2026-000077", "link": "http://127.0.0.1:8000/complaints/77"}
WA = Recipient(Channel.WHATSAPP, ADMIN_WA, "id")


def outbox(factory: sessionmaker[Session]) -> list[NotifyOutboxRow]:
    with factory() as session:
        return list(session.scalars(select(NotifyOutboxRow).order_by(NotifyOutboxRow.id)))


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def child_env(db_url: str, graph: FakeGraph) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_")}
    env.update({
        "PDN_OPS_DEMO": "1", "PDN_OPS_DATABASE_URL": db_url, "PDN_OPS_WHATSAPP_PROVIDER": "meta",
        "PDN_OPS_WHATSAPP_BASE_URL": graph.url, "PDN_OPS_WHATSAPP_ACCESS_TOKEN": TOKEN,
        "PDN_OPS_WHATSAPP_PHONE_NUMBER_ID": "1234", "PDN_OPS_WHATSAPP_USE_TEMPLATES": "0",
        "PDN_OPS_WHATSAPP_TIMEOUT": "60", "PDN_OPS_NOTIFY_POLL_SECONDS": "0.05",
        "PDN_OPS_NOTIFY_LEASE_SECONDS": "1", "PDN_OPS_NOTIFY_UNKNOWN_GRACE_SECONDS": "0",
    })
    return env


def run_worker_once(env: dict[str, str]) -> str:
    done = subprocess.run([*CLI, "notify", "worker", "--once"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


ENQUEUE_THEN_WAIT = textwrap.dedent("""
    import sys, time
    from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
    from pdn_ops.core.db.tables import AuditRow
    from pdn_ops.notify.model import Channel, Recipient
    from pdn_ops.notify.outbox import enqueue
    factory = make_sessionmaker(make_engine(sys.argv[1]))
    with transaction(factory) as session:  # the state change and its notification, one commit
        session.add(AuditRow(actor="engineer", action="fixed", subject="complaint:77"))
        enqueue(session, event="complaint_fixed", recipients=[Recipient(Channel.WHATSAPP, sys.argv[2])],
                params={"number": "PDN-2026-000077", "link": "http://127.0.0.1:8000/complaints/77"},
                idempotency_key="complaint:77:fixed")
    print("committed", flush=True)
    time.sleep(600)  # killed here, before anything is sent
""")


@pytest.mark.slow
def test_process_killed_between_the_commit_and_the_send_delivers_once_after_restart(
        notify_db_url: str, factory: sessionmaker[Session], fake_graph: FakeGraph, runtime: NotifyRuntime) -> None:
    child = subprocess.Popen([sys.executable, "-c", ENQUEUE_THEN_WAIT, notify_db_url, ADMIN_WA], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"committed"
    finally:
        kill(child)
    assert fake_graph.sends() == []
    env = child_env(notify_db_url, fake_graph)
    assert "sent 1" in run_worker_once(env)
    runtime.clock = utcnow  # one more pass, in this process, at real time: nothing left to send
    assert deliver_due(runtime).sent == 0
    assert len(fake_graph.accepted) == 1
    (row,) = outbox(factory)
    assert row.status == "sent"


@pytest.mark.slow
@pytest.mark.parametrize("provider_got_it", [True, False])
def test_worker_killed_during_the_send_delivers_exactly_once_after_restart(
        notify_db_url: str, factory: sessionmaker[Session], fake_graph: FakeGraph, runtime: NotifyRuntime,
        provider_got_it: bool) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_closed", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:77:closed")
    fake_graph.hold_count, fake_graph.accept_held = 1, provider_got_it
    env = child_env(notify_db_url, fake_graph)
    worker = subprocess.Popen([*CLI, "notify", "worker"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(fake_graph.sends()) == 1, what="the worker's request")
    finally:
        kill(worker)  # after the provider call, before the outcome is committed
    (row,) = outbox(factory)
    assert row.status == "sending"
    if provider_got_it:
        # Meta processed it and reports it, echoing our idempotency key (biz_opaque_callback_data).
        raw, _ = signed(fake_graph.status_callback(fake_graph.accepted[0], "delivered"), "unused")
        messages, statuses = parse(raw)
        with transaction(factory) as session:
            record_webhook(session, messages, statuses)
    time.sleep(1.1)  # the lease (1 s in this test) of the killed worker runs out
    run_worker_once(env)
    runtime.clock, runtime.unknown_grace = utcnow, timedelta(0)
    assert deliver_due(runtime).sent == 0
    assert len(fake_graph.accepted) == 1, "delivered exactly once"
    (row,) = outbox(factory)
    assert row.status == ("delivered" if provider_got_it else "sent")
    assert len(fake_graph.sends()) == (1 if provider_got_it else 2)


@pytest.fixture
def impatient(runtime: NotifyRuntime, fake_graph: FakeGraph) -> NotifyRuntime:
    runtime.senders[Channel.WHATSAPP] = MetaCloudProvider(fake_graph.url, "v21.0", "1234", SecretStr(TOKEN),
                                                          timeout=0.3)
    fake_graph.hold_count = 1  # answered only after our timeout: the outcome is unknown to us
    return runtime


def test_an_unknown_outcome_settled_by_the_providers_callback_is_not_sent_again(
        impatient: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:78:verified", now=clock.now)
    assert deliver_due(impatient).unknown == 1
    (row,) = outbox(factory)
    assert row.status == "sending" and "may have been processed" in (row.last_error or "")
    (accepted,) = fake_graph.accepted
    with transaction(factory) as session:
        outcome = notify_outbox.apply_status(session, StatusUpdate(
            accepted.wamid, Status.SENT, idempotency_key=accepted.body["biz_opaque_callback_data"]), now=clock.now)
    assert outcome == "applied"
    clock.advance(hours=2)
    assert deliver_due(impatient).sent == 0
    assert len(fake_graph.sends()) == 1
    (row,) = outbox(factory)
    assert (row.status, row.provider_message_id) == ("sent", accepted.wamid)


def test_an_unknown_outcome_without_any_report_is_sent_again_after_the_grace_window(
        impatient: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    fake_graph.accept_held = False  # the provider never processed the first request
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:79:verified", now=clock.now)
    assert deliver_due(impatient).unknown == 1
    clock.advance(minutes=5)
    assert deliver_due(impatient).sent == 0, "inside the grace window nothing is re-sent"
    clock.advance(minutes=6)
    report = deliver_due(impatient)
    assert (report.recovered, report.sent) == (1, 1)
    assert len(fake_graph.accepted) == 1
    assert impatient.unknown_grace == timedelta(minutes=10)


def test_an_unexpected_error_in_a_provider_is_an_unknown_outcome_and_ends_failed_at_the_cap(
        runtime: NotifyRuntime, factory: sessionmaker[Session], clock: Clock) -> None:
    class Buggy:
        name, channel, idempotent = "buggy", Channel.WHATSAPP, False
        calls = 0

        def send(self, message):
            Buggy.calls += 1
            raise KeyError("a bug after the request went out")

    runtime.senders[Channel.WHATSAPP] = Buggy()
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:80:verified", now=clock.now)
    for _ in range(runtime.retry.max_attempts + 2):
        deliver_due(runtime)
        clock.advance(hours=1)
    (row,) = outbox(factory)
    assert row.status == "failed" and "no provider report" in (row.last_error or "")
    assert Buggy.calls == runtime.retry.max_attempts
