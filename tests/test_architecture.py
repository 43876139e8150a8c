"""The import direction of shared/STYLE.md, enforced on the source tree."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (package prefix of the importer, forbidden import prefixes)
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("pdn_ops.domain", ("pdn_ops.", "collectors", "remediation", "sqlalchemy", "fastapi", "paramiko",
                        "proxmoxer", "aiohttp", "requests", "yaml", "pydantic")),
    ("collectors", ("pdn_ops.db", "pdn_ops.web", "pdn_ops.services", "pdn_ops.scheduler", "sqlalchemy", "fastapi")),
    ("remediation", ("pdn_ops.db", "pdn_ops.web", "pdn_ops.services", "pdn_ops.scheduler", "sqlalchemy",
                     "fastapi")),
    ("pdn_ops.web", ("pdn_ops.db.migrations",)),
]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


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


def test_layers_import_only_downwards() -> None:
    violations = []
    for top in ("pdn_ops", "collectors", "remediation"):
        for path in (ROOT / top).rglob("*.py"):
            module = module_name(path)
            for prefix, forbidden in RULES:
                if module != prefix and not module.startswith(prefix + "."):
                    continue
                for name in imports_of(path):
                    if any(name == f.rstrip(".") or name.startswith(f if f.endswith(".") else f + ".")
                           or name == f for f in forbidden):
                        if prefix == "pdn_ops.domain" and name.startswith("pdn_ops.domain"):
                            continue
                        violations.append(f"{module} imports {name}")
    assert not violations, violations


def test_domain_uses_only_the_standard_library() -> None:
    for path in (ROOT / "pdn_ops" / "domain").rglob("*.py"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top in STDLIB or name.startswith("pdn_ops.domain") or name == "pdn_ops.errors", (
                f"{module_name(path)} imports {name}"
            )


def test_only_services_and_scheduler_open_sessions() -> None:
    allowed = ("pdn_ops.services", "pdn_ops.scheduler", "pdn_ops.db", "pdn_ops.web", "pdn_ops.cli",
               "pdn_ops.lab", "pdn_ops.workers")
    offenders = []
    for top in ("pdn_ops", "collectors", "remediation"):
        for path in (ROOT / top).rglob("*.py"):
            module = module_name(path)
            if module.startswith(allowed):
                continue
            if "sqlalchemy.orm" in imports_of(path):
                offenders.append(module)
    assert not offenders, offenders
