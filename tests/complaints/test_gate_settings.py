"""The gates in front of password checks, photo processing and PDF rendering are settings (PDN_OPS_*), read into
the runtime's gates; a value out of range is refused at start, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.errors import ConfigError, Overloaded
from pdn_ops.core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_sizes_each_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in (("PHOTO_CHECKS", "3"), ("PHOTO_QUEUE", "7"), ("PHOTO_WAIT_SECONDS", "2.5"),
                        ("PDF_RENDERS", "2"), ("PDF_QUEUE", "0"), ("PDF_WAIT_SECONDS", "0"),
                        ("PASSWORD_CHECKS", "4")):
        monkeypatch.setenv(f"PDN_OPS_{name}", value)
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrate.upgrade(url)
    settings = load_settings(demo=True, database_url=url,
                             inventory=ROOT / "inventory.example.yaml", data_dir=tmp_path)
    runtime = build_runtime(settings)
    try:
        photo, pdf = runtime.complaints.photo_gate, runtime.complaints.pdf_gate
        assert (photo.limit, photo.queue, photo.wait_seconds) == (3, 7, 2.5)
        assert (pdf.limit, pdf.queue, pdf.wait_seconds, pdf.retry_after) == (2, 0, 0.0, 10)
        assert runtime.accounts.password_gate.limit == 4
        # No queue: the third PDF at once is refused at once, with the gate's Retry-After.
        with pdf.slot(), pdf.slot(), pytest.raises(Overloaded) as refused, pdf.slot():
            pass
        assert refused.value.retry_after == 10
    finally:
        runtime.engine.dispose()


@pytest.mark.parametrize(("name", "value"), [("PHOTO_CHECKS", "0"), ("PDF_RENDERS", "100"),
                                             ("PHOTO_QUEUE", "-1"), ("PDF_WAIT_SECONDS", "9999")])
def test_a_gate_setting_out_of_range_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str,
                                                         value: str) -> None:
    monkeypatch.setenv(f"PDN_OPS_{name}", value)
    with pytest.raises(ConfigError) as refused:
        load_settings(demo=True)
    assert name in str(refused.value).upper()
