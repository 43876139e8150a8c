"""The complaint procedure of the service standard: intake, states, SLA, reports, pages and API."""
