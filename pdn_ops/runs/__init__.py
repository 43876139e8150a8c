"""Remediation runs: requests, approvals, policy, the journal, the worker, automatic rules, closure."""
