"""A sentence of the catalogue not yet worded: standard library only, so that pure models can carry one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Message:
    """A catalogue key and its parameters, kept or passed without a language (``pdn_ops.core.i18n.word`` words it).

    A parameter that is itself a ``Message`` is worded in the same language as the sentence around it.
    """

    key: str
    params: Mapping[str, object] = field(default_factory=dict)
