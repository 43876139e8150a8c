"""Contact addresses, validated once for the inventory, the users screen and the notification outbox.

- A WhatsApp number must be an Indonesian **mobile** number (``+628...``), written in E.164 once normalised:
  WhatsApp reaches mobile numbers only, and a fixed line (``+6221...``) accepted here would fail later, at sending
  time, where nobody reads the error. ``phonenumbers`` (Google's libphonenumber) knows the numbering plan.
- An e-mail address goes through ``email-validator`` (pydantic's ``EmailStr``), without DNS lookups; it is kept
  lower-cased, as the outbox and the inbound matcher compare addresses.

Both raise ``ValueError`` with a sentence meant for a person; callers turn it into their own error shape
(``FILE:LINE: key`` for the inventory, a form field for the users screen).
"""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

WHATSAPP_REGION = "ID"
MAX_EMAIL = 320
_MOBILE = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def whatsapp_number(raw: str) -> str:
    """``+62 812-3456-7890`` or ``0812 3456 7890`` -> ``+6281234567890``; anything else raises ValueError."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, WHATSAPP_REGION)
    except phonenumbers.NumberParseException:
        raise ValueError("not a telephone number; write it like +6281234567890") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid telephone number; write it like +6281234567890")
    if phonenumbers.region_code_for_number(number) != WHATSAPP_REGION:
        raise ValueError("WhatsApp messages go to Indonesian (+62) numbers only")
    if phonenumbers.number_type(number) not in _MOBILE:
        raise ValueError("not a mobile number: WhatsApp reaches mobile numbers only")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_address(raw: str) -> str:
    """A syntactically valid address, lower-cased; anything else raises ValueError."""
    text = raw.strip()
    if len(text) > MAX_EMAIL:
        raise ValueError("too long for an e-mail address")
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("not an e-mail address") from None
    return checked.normalized.lower()


def is_deliverable(channel: str, address: str) -> bool:
    """Whether the outbox may send to ``address`` on ``channel`` ("whatsapp" or "email").

    Looser than the checks above for WhatsApp on purpose: a reply goes to whoever wrote to the service, from any
    country. The number must still be a valid number in E.164 form; an e-mail address passes the same check as
    ``email_address``, so nothing configured is refused later at sending time.
    """
    if channel == "email":
        try:
            email_address(address)
        except ValueError:
            return False
        return address == address.strip()
    if not address.startswith("+") or not address[1:].isdigit():
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(address, None))
    except phonenumbers.NumberParseException:
        return False
