"""The inventory file: the example validates, every broken variant names FILE:LINE: key.path."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pdn_ops.app.cli import main
from pdn_ops.core.errors import ConfigError, InventoryError
from pdn_ops.core.inventory import load_inventory, parse_inventory, resolve_secret

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventory.example.yaml"

VALID = """\
version: 1
clusters:
  - name: pdn1
    api_url: https://127.0.0.1:8006
    token_id: pdn-ops@pve!collector
    token_secret: env:PVE_TOKEN
    tls:
      ca_file: /etc/pdn-ops/pve-ca.pem
opds:
  - code: dinkes
    name: Dinas Kesehatan
vms:
  - cluster: pdn1
    vmid: 101
    name: web-dinkes
    opd: dinkes
    services: [nginx.service]
sites:
  - url: http://127.0.10.1/
    opd: dinkes
    vm: pdn1/101
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yaml")
    return info.value.problems


def test_example_inventory_validates() -> None:
    inv = load_inventory(EXAMPLE)
    assert inv.summary() == "1 clusters, 3 OPDs, 3 VMs, 2 sites"
    assert inv.vm("pdn1/101") is not None
    assert inv.vm("pdn1/101").services == ["nginx.service", "php8.2-fpm.service"]  # type: ignore[union-attr]


def test_minimal_valid_inventory_is_frozen() -> None:
    inv = parse_inventory(VALID, "inv.yaml")
    with pytest.raises(Exception, match="frozen"):
        inv.opds[0].name = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # unknown key, at its own line
        ("    name: web-dinkes\n", "    name: web-dinkes\n    colour: blue\n", "inv.yaml:16: vms[0].colour: unknown key"),
        # dangling reference to an OPD
        ("    opd: dinkes\n    services", "    opd: dinsos\n    services", "inv.yaml:16: vms[0].opd: no OPD with code 'dinsos'"),
        # dangling cluster
        ("  - cluster: pdn1\n", "  - cluster: pdn9\n", "inv.yaml:13: vms[0].cluster: no cluster named 'pdn9'"),
        # plain-text secret
        ("token_secret: env:PVE_TOKEN", "token_secret: s3cr3t-value", "inv.yaml:6: clusters[0].token_secret: must be a reference"),
        # http API url
        ("api_url: https://127.0.0.1:8006", "api_url: http://127.0.0.1:8006", "inv.yaml:4: clusters[0].api_url: must be an https:// URL"),
        # bad token id
        ("token_id: pdn-ops@pve!collector", "token_id: pdn-ops", "inv.yaml:5: clusters[0].token_id: must look like USER@REALM!TOKENNAME"),
        # TLS without verification
        ("      ca_file: /etc/pdn-ops/pve-ca.pem\n", "      {}\n", "inv.yaml:7: clusters[0].tls: give exactly one of ca_file or fingerprint"),
        # vmid out of range
        ("vmid: 101", "vmid: 42", "inv.yaml:14: vms[0].vmid: Input should be greater than or equal to 100"),
        # vmid not a number
        ("vmid: 101", "vmid: hundred", "inv.yaml:14: vms[0].vmid: Input should be a valid integer"),
        # unit name with shell metacharacters
        ("services: [nginx.service]", "services: ['nginx;rm -rf /']", "inv.yaml:17: vms[0].services: 'nginx;rm -rf /' is not a valid systemd unit name"),
        # unit name with a leading dash
        ("services: [nginx.service]", "services: ['--help']", "inv.yaml:17: vms[0].services: '--help' is not a valid systemd unit name"),
        # site URL scheme
        ("url: http://127.0.10.1/", "url: ftp://127.0.10.1/", "inv.yaml:19: sites[0].url: must be an http:// or https:// URL"),
        # site pointing at a VM that does not exist
        ("vm: pdn1/101\n", "vm: pdn1/999\n", "inv.yaml:21: sites[0].vm: no VM 'pdn1/999' in the inventory"),
        # missing required key
        ("    name: Dinas Kesehatan\n", "", "inv.yaml:10: opds[0].name: Field required"),
        # duplicate YAML key: reported, not silently dropped
        ("    name: web-dinkes\n", "    name: web-dinkes\n    name: web-dinkes-2\n", "inv.yaml:16: vms[0].name: duplicate key"),
        # bad OPD code
        ("  - code: dinkes\n", "  - code: Dinas Kes\n", "inv.yaml:10: opds[0].code: String should match pattern"),
    ],
)
def test_broken_inventory_names_file_line_and_key(old: str, new: str, expected: str) -> None:
    assert old in VALID
    problems = errors_of(VALID.replace(old, new, 1))
    assert any(p.startswith(expected) for p in problems), problems


def test_duplicates_are_reported_with_the_first_occurrence() -> None:
    text = VALID + "  - url: http://127.0.10.1/\n    opd: dinkes\n"
    problems = errors_of(text)
    assert problems == ["inv.yaml:22: sites[1]: duplicate site URL 'http://127.0.10.1/' (first at sites[0])"]
    vm_dup = VALID.replace("sites:", "  - cluster: pdn1\n    vmid: 101\n    name: again\n    opd: dinkes\nsites:")
    assert any("vms[1]: duplicate VM cluster/vmid 'pdn1/101'" in p for p in errors_of(vm_dup))


def test_every_problem_is_reported_at_once() -> None:
    text = VALID.replace("vmid: 101", "vmid: 5").replace("opd: dinkes\n    services", "opd: x\n    services")
    text = text.replace("token_secret: env:PVE_TOKEN", "token_secret: hunter2")
    problems = errors_of(text)
    assert len(problems) >= 2
    assert all(p.startswith("inv.yaml:") for p in problems)
    assert not any("hunter2" in p for p in problems), "a plain-text secret must never be echoed"


def test_yaml_syntax_error_names_the_line() -> None:
    problems = errors_of("clusters:\n  - name: [unclosed\nopds: []\n")
    assert len(problems) == 1 and problems[0].startswith("inv.yaml:3: (syntax):")


def test_document_that_is_not_a_mapping() -> None:
    assert errors_of("- just\n- a list\n") == [
        "inv.yaml:1: (document): the inventory must be a mapping with clusters, opds, vms, sites"
    ]


def test_yaml_tags_cannot_construct_python_objects() -> None:
    problems = errors_of("opds: !!python/object/apply:os.system ['true']\n")
    assert problems[0].startswith("inv.yaml:1: (syntax):")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"nope.yaml:1: \(file\): cannot read"):
        load_inventory(tmp_path / "nope.yaml")


def test_secret_references_resolve_without_leaking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVE_TOKEN", "abc-123")
    assert resolve_secret("env:PVE_TOKEN").get_secret_value() == "abc-123"
    assert "abc-123" not in repr(resolve_secret("env:PVE_TOKEN"))
    (tmp_path / "tok").write_text("from-file\n")
    assert resolve_secret("file:tok", tmp_path).get_secret_value() == "from-file"
    with pytest.raises(ConfigError, match="env:UNSET_VAR_X: environment variable is not set"):
        resolve_secret("env:UNSET_VAR_X")


def test_cli_check_exits_0_with_a_summary() -> None:
    result = CliRunner().invoke(main, ["inventory", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "OK: 1 clusters, 3 OPDs, 3 VMs, 2 sites" in result.output


def test_cli_check_exits_1_listing_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("token_secret: env:PVE_TOKEN", "token_secret: topsecret").replace("vmid: 101", "vmid: 1"))
    result = CliRunner().invoke(main, ["inventory", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:6: clusters[0].token_secret" in result.output
    assert f"{bad}:14: vms[0].vmid" in result.output
    assert "topsecret" not in result.output
