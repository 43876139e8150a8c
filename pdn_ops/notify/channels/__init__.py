"""Notification channels: WhatsApp (Meta Cloud API, an HTTP gateway) and e-mail (SMTP, IMAP)."""
