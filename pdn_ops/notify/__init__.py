"""Notifications and intake over WhatsApp and e-mail (issue 7).

Providers, rendering and webhook parsing live here and never touch the database; the outbox, the inbound
handlers and the worker live in ``pdn_ops.services.notify_*`` (only services open sessions). Seams:

- ``pdn_ops.notify.outbox.enqueue(session, *, event, recipients, params, idempotency_key)``: call it in
  the transaction of the state change that causes the notification;
- ``pdn_ops.notify.intake.ComplaintIntake``: implemented by the complaint code, stored in
  ``AppContext.extras["complaint_intake"]``;
- ``pdn_ops.notify.worker.start_notify_worker``: a ``create_app`` start hook;
- ``pdn_ops.notify.routes``: GET/POST ``/webhooks/whatsapp``;
- ``pdn_ops.notify.metrics.NotifyCollector``: registered by the central metrics module.
"""
