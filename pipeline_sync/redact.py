"""Remove credentials from URLs and text before they reach messages, logs or run storage."""

from __future__ import annotations

import re
from urllib.parse import SplitResult

MASK = "***"

# scheme://userinfo@ : the userinfo runs to the last "@" before "?", "#" or the end of the URL
# in the text (whitespace, quotes, brackets). A "/" does not end it: secrets (AWS secret keys,
# base64) hold unencoded slashes, so a path with an "@" may be masked too, a password never missed.
# A "//" does end it, so the next URL's scheme is never swallowed and the scan stays linear.
_USERINFO = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://)"
    r"(?P<userinfo>(?:[^/?#\s\"'<>()\[\]{}]|/(?!/))*)@"
)

# Query (or plain key=value) parameters whose value is a secret, alone or after a prefix ending
# in _ . or - (db_password); names compared case-insensitively.
SECRET_PARAMETERS = (
    "password",
    "passwd",
    "pwd",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
)
_PARAMETER = re.compile(
    r"(?P<name>(?<![\w.\-])(?:[\w.\-]*[_.\-])?"  # a prefix: db_password=, client.secret=
    r"(?:" + "|".join(re.escape(name) for name in SECRET_PARAMETERS) + r")=)"
    r"(?P<value>[^&#;\s\"'<>]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """text with the userinfo of every URL in it and every secret-looking parameter value masked.

    scheme://user:pass@host and scheme://token@host become scheme://***@host; password=...,
    token=..., X-Amz-Signature=... and the other SECRET_PARAMETERS keep their name, lose their value.
    """
    text = _USERINFO.sub(lambda match: f"{match['scheme']}{MASK}@", text)
    return _PARAMETER.sub(lambda match: f"{match['name']}{MASK}" if match["value"] else match[0], text)


def redact_url(url: str) -> str:
    """One URL (a setting such as an endpoint) with its userinfo and secret parameters masked.

    Everything from "//" to the URL's last "@" is userinfo here, whatever characters the
    password holds ("/", "?", "#" unencoded included); the rest is kept as written.
    """
    start = url.find("//")
    at = url.rfind("@")
    if start != -1 and at > start:
        url = f"{url[: start + 2]}{MASK}{url[at:]}"
    return redact(url)


def host_and_port(parts: SplitResult, default_host: str = "") -> str:
    """The netloc of a split URL without its userinfo: the host (bracketed when IPv6, default_host
    when there is none) and the port when there is one."""
    host = parts.hostname or default_host
    netloc = f"[{host}]" if ":" in host else host
    return f"{netloc}:{parts.port}" if parts.port is not None else netloc
