"""Secrets out of the access log.

Some callers must put a secret in the query string because the protocol says so: Meta's webhook verification
sends ``hub.verify_token`` that way. uvicorn logs every request's full path, so the filter installed here masks
such parameters before the line is written. The request itself is untouched.
"""

from __future__ import annotations

import logging
import re

# Query parameters whose values are credentials; matched case-insensitively, up to the next "&" or the end.
SECRET_PARAMETERS = ("hub.verify_token", "token", "access_token", "api_key", "password")
_PATTERN = re.compile(r"(?i)([?&](?:" + "|".join(re.escape(p) for p in SECRET_PARAMETERS) + r")=)[^&\s]*")


def redact(path: str) -> str:
    return _PATTERN.sub(r"\1[redacted]", path)


class RedactQuerySecrets(logging.Filter):
    """uvicorn's access records carry (client, method, full path, http version, status) as ``args``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(logger_name: str = "uvicorn.access") -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
        logger.addFilter(RedactQuerySecrets())
