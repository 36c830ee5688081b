"""Secrets out of messages: a store URL's password never reaches an exception or a log.

`ledger.stores.cassandra` quotes the URL it could not parse, password included, and an
error message ends up in logs, HTTP 503 bodies and CI output. Whoever reports an error
about a URL passes it through `redact` first (`ledger.url`, `region.cassandra`).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

_USERINFO = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


def redact(text: str, url: str) -> str:
    """`text` with the password of `url` (as written and decoded) and any URL userinfo masked."""
    text = _USERINFO.sub(r"\1:***@", text)
    try:
        password = urlsplit(url.strip()).password
    except ValueError:
        password = None
    for secret in {password, unquote(password)} if password else ():
        if secret:
            text = text.replace(secret, "***")
    return text


__all__ = ["redact"]
