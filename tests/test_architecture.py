"""The shape of shared/STYLE.md, enforced on the source tree (the import contracts are in pyproject.toml)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
FEATURES = ("accounts", "complaints", "health", "notify", "runs", "survey", "public")
# A feature's pure model: standard library only (and other pure modules of the same feature).
PURE = {
    "pdn_ops.accounts.model", "pdn_ops.complaints.model", "pdn_ops.complaints.sla", "pdn_ops.complaints.procedure",
    "pdn_ops.complaints.timeline", "pdn_ops.health.model", "pdn_ops.health.observations", "pdn_ops.health.drift",
    "pdn_ops.notify.model", "pdn_ops.notify.policy", "pdn_ops.runs.model", "pdn_ops.survey.model", "pdn_ops.public.model",
    "pdn_ops.core.i18n.message",
}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_every_feature_has_a_pure_model() -> None:
    for feature in FEATURES:
        assert (ROOT / "pdn_ops" / feature / "model.py").is_file(), feature


def test_pure_models_use_only_the_standard_library() -> None:
    offenders = []
    for name in sorted(PURE):
        path = ROOT / Path(*name.split(".")).with_suffix(".py")
        for imported in imports_of(path):
            # core.errors is the one exception tree, itself standard library only
            if imported.split(".")[0] not in STDLIB and imported not in PURE and imported != "pdn_ops.core.errors":
                offenders.append(f"{name} imports {imported}")
    assert not offenders, offenders


def test_no_two_packages_share_a_name() -> None:
    seen: dict[str, Path] = {}
    clashes = []
    for top in ("pdn_ops", "collectors", "remediation"):
        for init in (ROOT / top).rglob("__init__.py"):
            name = init.parent.name
            if name in seen:
                clashes.append(f"{init.parent} and {seen[name]}")
            seen.setdefault(name, init.parent)
    assert not clashes, clashes
