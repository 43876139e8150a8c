"""The suite runs twice in `make test`: on the real clock, and with the process clock moved a year ahead.

The file system's clock is the kernel's, which libfaketime does not move: a fresh file's modification time is the
real time, whatever ``time.time()`` says.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DAY = 86400.0


def _skew(tmp_path: Path) -> float:
    probe = tmp_path / "now"
    probe.write_bytes(b"")
    return time.time() - probe.stat().st_mtime


def test_the_process_clock_is_where_this_run_says(tmp_path: Path) -> None:
    offset = os.environ.get("PDN_OPS_FUTURE_CLOCK")
    skew = _skew(tmp_path)
    if offset:
        days = float(offset.lstrip("+").rstrip("d"))
        assert abs(skew - days * DAY) < DAY, f"clock moved by {skew / DAY:.1f} days, not {offset}"
    else:
        assert abs(skew) < 60, f"the clock is {skew / DAY:.1f} days away from the file system's"


def test_sleeping_and_timed_waits_keep_their_length_on_a_moved_clock() -> None:
    import threading

    started = time.monotonic()
    time.sleep(0.05)
    threading.Event().wait(0.05)
    assert 0.09 < time.monotonic() - started < 5
