"""Playbooks by name, from the one plug-in table in ``pdn_ops.core.registry`` (imported lazily, one instance each).

An unknown name here comes from a request, so it is a refusal (``PolicyRefused``), not a configuration error.
"""

from __future__ import annotations

from functools import cache
from typing import cast

from pdn_ops.core import registry as plugins
from pdn_ops.core.errors import PolicyRefused
from remediation.playbooks.base import Playbook

PLAYBOOKS = plugins.PLAYBOOKS


@cache
def playbook(name: str) -> Playbook:
    if name not in PLAYBOOKS:
        raise PolicyRefused(f"no playbook named {name!r}")
    return cast(Playbook, plugins.playbook_class(name)())
