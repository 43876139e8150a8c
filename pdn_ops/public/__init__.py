"""The public face of the service standard: the published standard (Standar Pelayanan), complaints about the
service itself, and the OPDs' status pages. These pages need no login.

This module is the feature's public face: other features import from here, never from its modules."""

from __future__ import annotations

from pdn_ops.public.service import FeedbackStats, feedback_stats

__all__ = ["FeedbackStats", "feedback_stats"]
