"""The plug-in registry: an explicit table, imported lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pdn_ops.core import registry
from pdn_ops.core.errors import ConfigError


@pytest.mark.parametrize("kind", sorted(registry.COLLECTORS))
def test_every_registered_collector_imports_and_names_its_kind(kind):
    cls = registry.collector_class(kind)
    assert getattr(cls, "kind", None) == kind


def test_unknown_kind_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match="known: http, proxmox, ssh"):
        registry.collector_class("snmp")


def test_importing_the_registry_loads_no_collector_library():
    code = ("import sys, pdn_ops.core.registry; "
            "print(sorted(m for m in ('paramiko', 'proxmoxer', 'aiohttp', 'collectors.ssh') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
