"""Complaints about the service that arrive as WhatsApp or e-mail messages: the notify worker's ``FeedbackIntake``.

Runs inside the inbound handler's transaction. The sender's address becomes the contact for the answer; the
throttle counts a keyed hash of it, as for the public form.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime

from sqlalchemy.orm import Session

from pdn_ops.core.errors import Throttled
from pdn_ops.notify import Channel
from pdn_ops.public.model import check_feedback, feedback_from_message
from pdn_ops.public.service import client_key, receive_feedback


class MessageFeedback:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def take(self, session: Session, *, channel: Channel, address: str, text: str, now: datetime) -> bool:
        body = feedback_from_message(text)
        if body is None:
            return False
        draft, errors = check_feedback("", address, body)
        if "message" in errors:
            return False  # the keyword alone, or too long: left to the usual intake (which answers it)
        draft = type(draft)(draft.name, address, draft.message)  # the sender's own address, valid or not
        # Over the hourly cap: taken (it is not a VM complaint) but not recorded again.
        with suppress(Throttled):
            receive_feedback(session, draft, channel=channel.value, client=client_key(self._secret, address),
                             now=now)
        return True
