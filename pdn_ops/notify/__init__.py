"""Notifications and intake over WhatsApp and e-mail.

The channels (``channels/``: providers, webhook parsing), the model and the rendering never touch the database;
the outbox, the inbound handlers and the worker do. Seams:

- ``pdn_ops.notify.outbox.enqueue(session, *, event, recipients, params, idempotency_key)``: call it in
  the transaction of the state change that causes the notification;
- ``pdn_ops.notify.intake.ComplaintIntake``: implemented by the complaint feature, handed to the worker by the
  composition root;
- ``pdn_ops.notify.worker.start_notify_worker``: the worker thread inside the service;
- ``pdn_ops.notify.routes``: GET/POST ``/webhooks/whatsapp``;
- ``pdn_ops.notify.metrics.NotifyCollector``: registered by the central metrics module.


This module is the feature's public face: other features import from here, never from its modules."""

from __future__ import annotations

from pdn_ops.notify.intake import FeedbackIntake, IntakeReply, RegisteredAdmin
from pdn_ops.notify.media import CheckedPhoto
from pdn_ops.notify.model import Channel, Recipient
from pdn_ops.notify.outbox import alert_engineers, enqueue

__all__ = [
    "Channel",
    "CheckedPhoto",
    "FeedbackIntake",
    "IntakeReply",
    "Recipient",
    "RegisteredAdmin",
    "alert_engineers",
    "enqueue",
]
