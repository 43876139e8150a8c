"""Checks websites asynchronously: status, timings, keyword, redirects, TLS validity and expiry."""
