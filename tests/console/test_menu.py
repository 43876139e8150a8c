"""Every area is reachable from the menu, for every role, and the menu offers nothing a role may not open."""

from __future__ import annotations

import re

import pytest

from pdn_ops.web.menu import MENU, menu_for

ROLES = {"head-dinkes": "opd_head", "admin-dinkes": "opd_admin", "engineer": "engineer", "supervisor": "supervisor"}


def _menu_links(html: str) -> list[str]:
    nav = re.search(r'<nav[^>]*id="menu"[^>]*>(.*?)</nav>', html, re.S)
    assert nav, "the page has no menu"
    return [h for h in re.findall(r'href="([^"?]+)"', nav.group(1)) if h != "/account"]


@pytest.mark.parametrize("username", sorted(ROLES))
def test_every_menu_entry_opens_for_its_role(world, username: str) -> None:
    client = world.client(username)
    links = _menu_links(client.get("/").text)
    assert links == [e.href for e in menu_for(ROLES[username], "/", demo=False)]
    for href in links:
        response = client.get(href)
        assert response.status_code == 200, (username, href, response.status_code)
        assert 'aria-current="page"' in response.text.split('id="menu"', 1)[1].split("</nav>", 1)[0]


def test_every_area_is_in_some_roles_menu() -> None:
    reachable = {e.href for role in ROLES.values() for e in menu_for(role, "/", demo=True)}
    assert reachable == {item.href for item in MENU}
    for area in ("/fleet", "/remediation", "/remediation/automation", "/lab"):
        assert area in {e.href for e in menu_for("engineer", "/", demo=True)}
    assert "/lab" not in {e.href for e in menu_for("engineer", "/", demo=False)}


def test_the_current_area_is_the_longest_matching_entry() -> None:
    current = [e.href for e in menu_for("engineer", "/remediation/automation", demo=False) if e.current]
    assert current == ["/remediation/automation"]
    current = [e.href for e in menu_for("engineer", "/remediation/runs/4", demo=False) if e.current]
    assert current == ["/remediation"]


def test_anonymous_visitors_get_no_menu_but_the_login() -> None:
    assert menu_for(None, "/", demo=True) == []
