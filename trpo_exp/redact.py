"""Secrets out of every file and message: passwords in database URLs.

A sweep's storage URL may carry a password in any form libpq and SQLAlchemy accept:
``scheme://user:password@host/db`` (the password may hold a raw ``@``: the host starts after the
last one) or ``scheme://user@host/db?password=...``. The password travels in the environment
instead (sweeps.trial_report.STORAGE_PASSWORD_ENV); what is written or printed is redacted.
"""

from __future__ import annotations

import re
from typing import Optional

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
# Greedy up to the last "@" of the token: a raw "@" inside the password stays inside the match.
_USERINFO_PASSWORD = re.compile(rf"(?P<head>{_SCHEME}[^:/@\s?#]*:)(?P<password>\S*)(?=@)")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&\s#'\"]*)", re.IGNORECASE)
MASK = "***"


def redact_secrets(text: str) -> str:
    """Passwords in URLs replaced by ``***``: for every message, record and file a password could
    reach (storage URLs of sweeps, command lines, W&B metadata)."""
    text = _USERINFO_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def split_url_password(url: str) -> tuple[str, Optional[str]]:
    """``scheme://user:pw@host/db`` or ``scheme://user@host/db?password=pw`` -> (the URL without
    the password, ``pw``); (url, None) without one."""
    password = None
    m = _USERINFO_PASSWORD.search(url)
    if m is not None:
        password = m.group("password")
        url = url[:m.start("password") - 1] + url[m.end("password"):]
    q = _QUERY_PASSWORD.search(url)
    if q is not None:
        password = password if password is not None else q.group("password")
        separator = q.group("head")[0]
        rest = url[q.end():]
        if separator == "?" and rest.startswith("&"):
            rest = "?" + rest[1:]
        url = url[:q.start()] + rest
    return url, password


def with_url_password(url: str, password: Optional[str]) -> str:
    """The inverse of split_url_password: put ``password`` back into a URL that has a user but none."""
    if not password:
        return url
    m = re.match(rf"(?P<head>{_SCHEME})(?P<user>[^:/@\s]+)@", url)
    if m is None:
        return url
    return f"{m.group('head')}{m.group('user')}:{password}@{url[m.end():]}"
