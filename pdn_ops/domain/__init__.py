"""Pure domain logic (standard library only): health evaluation, complaint states, SLA clock, policies."""
