"""Pure rules of the public pages: the service standard's content, a service complaint, a status page's view.

Standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

# The standard's parts (UU 25/2009, art. 21, as the office publishes them): each a text block; list parts are one
# item a line.
STANDARD_PARTS: Final = ("requirements", "procedure", "time", "cost", "product", "complaints")
LIST_PARTS: Final = frozenset({"requirements", "procedure"})
MAX_PART = 4000
MAX_NOTE = 500


@dataclass(frozen=True, slots=True)
class StandardContent:
    """One version of the standard as the supervisor wrote it (the defaults come from the catalogue)."""

    parts: dict[str, str]
    email: str = ""
    whatsapp: str = ""

    def items(self, part: str) -> list[str]:
        return [line.strip() for line in self.parts.get(part, "").splitlines() if line.strip()]


def check_standard(parts: dict[str, str], email: str, whatsapp: str) -> tuple[StandardContent, dict[str, str]]:
    """The content and every problem at once (field -> catalogue key); nothing is kept when there is one."""
    errors: dict[str, str] = {}
    clean: dict[str, str] = {}
    for part in STANDARD_PARTS:
        text = normalise_text(parts.get(part, ""))
        if not text.strip():
            errors[part] = "standard.error.empty"
        elif len(text) > MAX_PART:
            errors[part] = "standard.error.long"
        clean[part] = text.strip()
    email = email.strip().lower()
    if email and not EMAIL.fullmatch(email):
        errors["email"] = "standard.error.email"
    whatsapp = whatsapp.strip().replace(" ", "").replace("-", "")
    if whatsapp and not WHATSAPP.fullmatch(whatsapp):
        errors["whatsapp"] = "standard.error.whatsapp"
    return StandardContent(clean, email, whatsapp), errors


EMAIL: Final = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
WHATSAPP: Final = re.compile(r"\+62[0-9]{8,13}")


def normalise_text(text: str) -> str:
    """NFC, Windows line ends folded, control characters other than newline and tab removed."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c)[0] != "C")


# --- complaints about the service itself ---------------------------------------------------------------------------

FEEDBACK_CHANNELS: Final = ("web", "email", "whatsapp")
MAX_FEEDBACK = 2000
MIN_FEEDBACK = 10
MAX_NAME = 120


@dataclass(frozen=True, slots=True)
class FeedbackDraft:
    name: str
    contact: str
    message: str


def check_feedback(name: str, contact: str, message: str) -> tuple[FeedbackDraft, dict[str, str]]:
    """A public form's content, every problem at once. Everything here was typed by anyone on the internet."""
    errors: dict[str, str] = {}
    name = normalise_text(name).replace("\n", " ").strip()
    contact = normalise_text(contact).replace("\n", " ").strip()
    message = normalise_text(message).strip()
    if len(name) > MAX_NAME:
        errors["name"] = "feedback.error.name"
    if contact and not (EMAIL.fullmatch(contact.lower()) or WHATSAPP.fullmatch(contact.replace(" ", ""))):
        errors["contact"] = "feedback.error.contact"
    if len(message) < MIN_FEEDBACK:
        errors["message"] = "feedback.error.short"
    elif len(message) > MAX_FEEDBACK:
        errors["message"] = "feedback.error.long"
    return FeedbackDraft(name, contact, message), errors


# A message over WhatsApp or e-mail is about the service itself when it starts with this word (the standard says so).
FEEDBACK_KEYWORD: Final = "LAYANAN"


def feedback_from_message(text: str) -> str | None:
    """The complaint in a message that starts with the keyword (any case, then a space, colon or newline)."""
    head = text.lstrip()
    if head[: len(FEEDBACK_KEYWORD)].upper() != FEEDBACK_KEYWORD:
        return None
    rest = head[len(FEEDBACK_KEYWORD):]
    if rest and rest[0] not in " :\n\t":
        return None  # "LAYANANKU ..." is not the keyword
    return rest.lstrip(" :\n\t")
