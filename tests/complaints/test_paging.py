"""Every list pages: /fleet, /users and /remediation/runs take a cursor and a bounded limit."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit


def _all_pages(client, path: str, key: str = "id") -> list[object]:
    seen: list[object] = []
    url: str | None = path
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items = body if isinstance(body, list) else body["opds"]
        assert len(items) <= 2
        seen += [item[key] for item in items]
        link = answer.headers.get("link")
        url = None
        if link:
            target = urlsplit(link.split(";")[0].strip("<>"))
            url = f"{target.path}?{target.query}"
            assert parse_qs(target.query)["cursor"] == [answer.headers["x-next-cursor"]]
    return seen


def test_users_page_through_the_api_without_gaps_or_repeats(world) -> None:
    supervisor = world.client("supervisor")
    everyone = [u["id"] for u in supervisor.get("/api/v1/users?limit=500").json()]
    paged = _all_pages(supervisor, "/api/v1/users?limit=2")
    assert paged == sorted(everyone) and len(paged) == len(set(paged)) and len(paged) > 2


def test_the_fleet_pages_by_opd_and_keeps_the_whole_counts(world) -> None:
    engineer = world.client("engineer")
    whole = engineer.get("/api/v1/fleet").json()
    first = engineer.get("/api/v1/fleet?limit=1").json()
    assert len(first["opds"]) == 1 and first["counts"] == whole["counts"]
    assert _all_pages(engineer, "/api/v1/fleet?limit=2", key="code") == [o["code"] for o in whole["opds"]]
    page = engineer.get("/fleet?limit=1")
    assert page.status_code == 200 and "Halaman berikutnya" in page.text


def test_runs_page_and_bad_paging_is_refused(world) -> None:
    engineer = world.client("engineer")
    assert engineer.get("/api/v1/remediation/runs?limit=1").status_code == 200
    for query in ("cursor=abc", "cursor=99999999999", "limit=0", "limit=100000"):
        answer = engineer.get(f"/api/v1/remediation/runs?{query}")
        assert answer.status_code == 422, query
        assert {"errors", "message"} <= set(answer.json())


def test_the_runs_page_takes_the_same_paging(world) -> None:
    engineer = world.client("engineer")
    assert engineer.get("/remediation?limit=1").status_code == 200
    refused = engineer.get("/remediation?cursor=abc")
    assert refused.status_code == 422 and "tidak sah" in refused.text


def test_the_users_page_pages_in_its_own_order(world) -> None:
    import re

    supervisor = world.client("supervisor")
    whole = re.findall(r'href="/users/(\d+)"', supervisor.get("/users?status=all").text)
    seen: list[str] = []
    url: str | None = "/users?status=all&limit=2"
    while url:
        page = supervisor.get(url)
        assert page.status_code == 200
        shown = re.findall(r'href="/users/(\d+)"', page.text)
        assert len(shown) <= 2
        seen += shown
        found = re.search(r'<a href="([^"]+)">Halaman berikutnya</a>', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == whole and len(whole) > 2
