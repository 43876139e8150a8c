"""Every failure class a collector can report has its text in both languages."""

from __future__ import annotations

from pdn_ops.core.i18n import translate
from pdn_ops.health.observations import FailureClass


def test_every_failure_class_has_a_catalogue_text():
    for failure in FailureClass:
        assert translate(f"collectors.failure.{failure.value}", "id")
        assert translate(f"collectors.failure.{failure.value}", "en")
    assert translate("collectors.failure.host_key", "en").startswith("SSH host key changed")
