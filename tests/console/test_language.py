"""One language per page: every page reachable from the menu (and the pages they link to), in Indonesian and in
English, as every role. A page fails on a catalogue key, a snake_case code, a Python repr, or an English word on
an Indonesian page. Machine text meant as such (<code>, <pre>, URLs, attribute values) is not read."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from pdn_ops.core.i18n import catalogue
from tests.complaints.world import World, file_complaint

ROLES = ("engineer", "supervisor", "head-dinkes", "admin-dinkes")
# Common English words that have no business on an Indonesian page (names and codes aside).
ENGLISH = {"the", "and", "of", "with", "from", "complaint", "complaints", "remediation", "approve", "approved",
           "succeeded", "failed", "pending", "running", "awaiting", "queued", "assigned", "verified", "returned",
           "fixed", "closed", "merged", "submitted", "report", "reports", "settings", "users", "fleet", "home",
           "engineer", "playbook", "yes", "no", "none", "true", "false", "unknown", "down", "up", "degraded",
           "step", "steps", "state", "status", "logout", "login", "save", "cancel", "back", "next", "more",
           "hours", "days", "minutes", "seconds", "ago", "left", "due", "priority", "owner"} - {"status", "no", "login"}
REPR = re.compile(r"\{'|'\}|\[\(|<[a-z_.]+ object at|datetime\.datetime\(")
REPR_ID = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b")  # English words on an English page
SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")
SKIP_TAGS = {"code", "pre", "script", "style", "title", "svg"}
# Names that are not words of either language (product, protocols, units, brands).
ALLOWED = {"pdn-ops", "opd", "vm", "sla", "wib", "pdf", "csv", "xlsx", "api", "ssh", "tls", "http", "https", "id",
           "en", "nip", "upid", "cpu", "ram", "url", "whatsapp", "e-mail", "email", "lab", "proxmox", "ok"}


class Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.skip = 0
        self.parts: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP_TAGS:
            self.skip += 1
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if href.startswith("/") and not href.startswith("//"):
                self.links.append(href.split("#")[0])

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP_TAGS and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def problems(html: str, lang: str, names: set[str]) -> tuple[list[str], list[str]]:
    parser = Text()
    parser.feed(html)
    text = " ".join(parser.parts)
    found = []
    keys = set(catalogue())
    for token in re.findall(r"\b[a-z_]+(?:\.[a-z_]+)+\b", text):
        if token in keys:
            found.append(f"catalogue key {token!r}")
    for token in SNAKE.findall(re.sub(r"\S+@\S+|https?://\S+|/\S+", " ", text)):
        if token not in names:
            found.append(f"code {token!r}")
    for pattern in (REPR, REPR_ID) if lang == "id" else (REPR,):
        if (match := pattern.search(text)) is not None:
            found.append(f"python repr near {match.group(0)!r}")
    if lang == "id":
        words = {w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"https?://\S+|/\S+", " ", text))}
        english = sorted(words & ENGLISH - ALLOWED - {n.lower() for n in names})
        found += [f"English word {w!r}" for w in english]
    return found, parser.links


def _walk(world: World, username: str, lang: str, names: set[str], limit: int = 60) -> dict[str, list[str]]:
    client = world.client(username)
    queue: list[str] = ["/"]
    seen: set[str] = set()
    bad: dict[str, list[str]] = {}
    while queue and len(seen) < limit:
        path = queue.pop(0)
        if path in seen or path.startswith(("/static", "/logout", "/api", "/metrics")) or path.endswith(
                (".pdf", ".csv", ".xlsx")) or "/photos/" in path:
            continue
        seen.add(path)
        response = client.get(path, params={"lang": lang})
        if response.status_code != 200 or "text/html" not in response.headers.get("content-type", ""):
            continue
        found, links = problems(response.text, lang, names)
        if found:
            bad[path] = found
        queue += [link.split("?")[0] for link in links if link.split("?")[0] not in seen]
    return bad


@pytest.fixture(scope="module")
def busy(world: World) -> set[str]:
    """A complaint worked through the procedure, so that the pages have something to say."""
    admin = world.client("admin-dinkes")
    url = file_complaint(admin, f"vm:{world.vm['web-dinkes']}").headers["location"]
    engineer = world.client("engineer")
    engineer.post(f"{url}/actions/verify")
    engineer.post(f"{url}/assign", data={"assignee": "me"})
    engineer.post(f"{url}/notes", data={"body": "Catatan kerja"})
    return {"web-dinkes", "simpeg-disdik", "sipkd-bpkad", "admin-dinkes", "head-dinkes", "admin-disdik",
            "head-disdik", "engineer", "supervisor"}  # names of things and people, not words


@pytest.mark.parametrize("lang", ["id", "en"])
@pytest.mark.parametrize("username", ROLES)
def test_every_page_speaks_one_language(world: World, busy: set[str], username: str, lang: str) -> None:
    bad = _walk(world, username, lang, busy)
    assert not bad, "\n".join(f"{path}: {', '.join(found)}" for path, found in sorted(bad.items()))
