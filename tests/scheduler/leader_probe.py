"""A stand-in for one web worker: ``python -m tests.scheduler.leader_probe DATABASE_URL``.

It competes for the scheduler lock exactly as the app's start hook does and, when it wins, runs a job named
``probe:<pid>`` every 0.3 s through the real wrapper, so the database shows which process schedules. It stops
when its stdin closes (or when it is killed, as a crashed worker would be).
"""

from __future__ import annotations

import os
import sys

from pdn_ops.core.db.engine import make_engine, make_sessionmaker
from pdn_ops.core.jobs import JobSpec
from pdn_ops.core.locks import leader_lock_for
from pdn_ops.core.scheduler import start_scheduler


def _nothing() -> None:
    return None


def _record(_session: object, _result: object) -> None:
    return None


def main() -> None:
    engine = make_engine(sys.argv[1])
    spec = JobSpec(f"probe:{os.getpid()}", "maintenance", 0.3, _nothing, _record)
    service = start_scheduler(make_sessionmaker(engine), leader_lock_for(engine), [spec], retry_s=0.2)
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    service.stop()
    engine.dispose()


if __name__ == "__main__":
    main()
