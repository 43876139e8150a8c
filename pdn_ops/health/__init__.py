"""Health: collectors' observations become per-target states, events, history, the fleet and /metrics."""
