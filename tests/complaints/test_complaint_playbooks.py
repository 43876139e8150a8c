"""From the complaint to the fix: the playbooks that fit the complaint's VM are one click from their plan (staff).

The world's inventory (inventory.example.yaml): web-dinkes (pdn1/101) has SSH, two declared services and a
declared cleanup, and the site Portal Dinkes runs on it; simpeg-disdik (pdn1/102) declares a service but no SSH.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from tests.complaints.world import World, file_complaint

DRY_RUN = "/remediation/dry-run"


class Choices(HTMLParser):
    """Each ``<li data-playbook>`` of a page: the fields of its form, its form's target, the options, its link."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "li" and "data-playbook" in a:
            self._current = {"playbook": a["data-playbook"], "fields": {}, "action": None, "options": [],
                             "href": None}
            self.items.append(self._current)
        elif self._current is not None:
            if tag == "form":
                self._current["action"] = a.get("action")
            elif tag == "input" and a.get("name"):
                self._current["fields"][a["name"]] = a.get("value")
            elif tag == "option":
                self._current["options"].append(a.get("value"))
            elif tag == "a":
                self._current["href"] = a.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._current = None


def complaint_url(world: World, asset: str, admin: str = "admin-dinkes") -> str:
    """A filed complaint, verified: playbooks are offered only from then on."""
    response = file_complaint(world.client(admin), asset)
    assert response.status_code == 303, response.text
    url = str(response.headers["location"])
    assert world.client("engineer").post(f"{url}/actions/verify").status_code == 303
    return url


def choices(world: World, username: str, url: str) -> list[dict[str, Any]]:
    page = world.client(username).get(url)
    assert page.status_code == 200
    return Choices(page.text).items


def test_staff_see_the_playbooks_that_fit_the_complaints_vm_each_one_click_from_its_plan(world: World) -> None:
    url = complaint_url(world, f"vm:{world.vm['web-dinkes']}")
    complaint_id = url.rsplit("/", 1)[1]
    found = choices(world, "engineer", url)
    assert [(c["playbook"], c["fields"].get("param_value")) for c in found] == [
        ("restart_service", "nginx.service"), ("restart_service", "php8.2-fpm.service"), ("free_disk", "journal"),
        ("restart_vm", None), ("resize_vm", None), ("restore_snapshot", None)]
    forms = [c for c in found if c["playbook"] != "restore_snapshot"]
    for choice in forms:
        assert choice["action"] == DRY_RUN
        fields = choice["fields"]
        assert (fields["playbook"], fields["target"], fields["complaint_id"]) == (
            choice["playbook"], "pdn1/101", complaint_id)
        assert fields["csrf_token"]
    assert found[4]["options"] == ["cores", "memory_mib", "disk_grow_gib"], "the resize asks for a size"
    assert found[5]["href"] == f"/remediation/snapshots/pdn1/101?complaint_id={complaint_id}"

    engineer = world.client("engineer")
    # One click: the dry run of the first choice, the complaint carried on to the request form.
    fields = {k: v or "" for k, v in forms[0]["fields"].items() if k != "csrf_token"}
    plan = engineer.post(DRY_RUN, data=fields)
    assert plan.status_code == 200 and "systemctl restart nginx.service" in plan.text
    assert f'name="complaint_id" value="{complaint_id}"' in plan.text
    resize = {k: v or "" for k, v in forms[4]["fields"].items() if k != "csrf_token"}
    plan = engineer.post(DRY_RUN, data={**resize, "param_name": "cores", "param_value": "4"})
    assert plan.status_code == 200 and "cores=4" in plan.text
    assert f'name="complaint_id" value="{complaint_id}"' in plan.text
    chooser = engineer.get(found[5]["href"])
    assert chooser.status_code == 200 and f'href="/complaints/{complaint_id}"' in chooser.text


def test_a_site_complaint_offers_the_playbooks_of_the_sites_vm(world: World) -> None:
    url = complaint_url(world, f"site:{world.site['Portal Dinkes']}")
    found = choices(world, "engineer", url)
    assert {c["playbook"] for c in found} == {"restart_service", "free_disk", "restart_vm", "resize_vm",
                                              "restore_snapshot"}
    assert {c["fields"].get("target") for c in found if c["fields"]} == {"pdn1/101"}


def test_a_vm_without_ssh_is_offered_no_ssh_playbook(world: World) -> None:
    url = complaint_url(world, f"vm:{world.vm['simpeg-disdik']}", admin="admin-disdik")
    found = choices(world, "engineer", url)
    assert [c["playbook"] for c in found] == ["restart_vm", "resize_vm", "restore_snapshot"]
    assert found[-1]["href"].startswith("/remediation/snapshots/pdn1/102?complaint_id=")


def test_opd_users_see_no_playbook_and_another_opds_complaint_is_a_404(world: World) -> None:
    url = complaint_url(world, f"vm:{world.vm['web-dinkes']}")
    for username in ("admin-dinkes", "head-dinkes"):
        page = world.client(username).get(url)
        assert page.status_code == 200
        assert Choices(page.text).items == []
        assert "/remediation/" not in page.text and 'id="playbooks"' not in page.text
    outsider = world.client("admin-disdik")
    other, missing = outsider.get(url), outsider.get("/complaints/999999")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
