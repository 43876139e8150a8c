"""Alerts from Alertmanager: the receiver that records them on the fleet and incident pages and tells the
engineers, once per alert and state change, through the outbox.

This module is the feature's public face: other features import from here, never from its modules."""

from __future__ import annotations
