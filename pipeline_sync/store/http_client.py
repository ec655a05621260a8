"""HTTP to Front50 or Gate: auth, timeouts, and retries with backoff for reads only.

A read (GET) that fails with a connection error, a timeout or a 5xx is retried with exponential
backoff. A write is sent once: whether a write whose answer was lost landed is decided by the
store, by reading the object again, never by sending it again blindly.

Credentials (a password, a bearer token, a session cookie, a client key) live only in the
session's headers; messages name the server as scheme://host:port and the auth scheme, never a
secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from pipeline_sync.errors import StoreError
from pipeline_sync.live import DEFAULT_LIMITS, LiveLimits
from pipeline_sync.redact import host_and_port, redact

# Environment variables of the HTTP stores (docs/http-store.md).
CLIENT_CERT = "PIPELINE_SYNC_HTTP_CLIENT_CERT"
CLIENT_KEY = "PIPELINE_SYNC_HTTP_CLIENT_KEY"
CA_BUNDLE = "PIPELINE_SYNC_HTTP_CA_BUNDLE"
BASIC_USER = "PIPELINE_SYNC_HTTP_USER"
PASSWORD_FILE = "PIPELINE_SYNC_HTTP_PASSWORD_FILE"
TOKEN_FILE = "PIPELINE_SYNC_HTTP_TOKEN_FILE"
COOKIE_FILE = "PIPELINE_SYNC_HTTP_COOKIE_FILE"
TIMEOUT = "PIPELINE_SYNC_HTTP_TIMEOUT"
RETRIES = "PIPELINE_SYNC_HTTP_RETRIES"
BACKOFF = "PIPELINE_SYNC_HTTP_BACKOFF"
SESSION_COOKIE = "SESSION"  # Gate's Spring Session cookie

DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 8.0
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpAuth:
    """How to authenticate: any of a client certificate, basic auth, a bearer token file, a
    session cookie file. Files are read on every request, so a rotated token is picked up."""

    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    cookie_file: Path | None = None

    def schemes(self) -> list[str]:
        """The auth schemes in use, for messages (no secrets)."""
        found = []
        if self.client_cert is not None:
            found.append("x509 client certificate")
        if self.username is not None:
            found.append(f"basic auth as {self.username}")
        if self.token_file is not None:
            found.append(f"bearer token from {self.token_file}")
        if self.cookie_file is not None:
            found.append(f"session cookie from {self.cookie_file}")
        return found

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, username: str | None, password: str | None) -> HttpAuth:
        """The auth the PIPELINE_SYNC_HTTP_* variables set; username/password from the URL win."""
        cert, key = _path(env, CLIENT_CERT), _path(env, CLIENT_KEY)
        if (cert is None) != (key is None):
            raise StoreError(
                f"{CLIENT_CERT} and {CLIENT_KEY} go together: set both (the client certificate and "
                "its key, PEM files) or neither."
            )
        user = username or env.get(BASIC_USER, "").strip() or None
        secret = password
        password_file = _path(env, PASSWORD_FILE)
        if secret is None and password_file is not None:
            secret = _secret_file(password_file, PASSWORD_FILE)
        if secret is not None and user is None:
            raise StoreError(f"a password is set but no user: set {BASIC_USER} or put the user in the URL.")
        return cls(
            client_cert=cert,
            client_key=key,
            ca_bundle=_path(env, CA_BUNDLE),
            username=user,
            password=secret if user is not None else None,
            token_file=_path(env, TOKEN_FILE),
            cookie_file=_path(env, COOKIE_FILE),
        )


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value) if value else None


def _secret_file(path: Path, variable: str) -> str:
    """A secret file's first line, stripped; its content never reaches a message."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise StoreError(
            f"cannot read {path} ({variable}): {reason}; fix the path or its permissions."
        ) from None
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not line:
        raise StoreError(f"{path} ({variable}) is empty: write the secret on its first line.")
    return line


@dataclass(frozen=True)
class HttpSettings:
    """One Front50 or Gate: its base URL (without credentials), auth, and patience."""

    base_url: str
    auth: HttpAuth = HttpAuth()
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    limits: LiveLimits = DEFAULT_LIMITS

    def describe(self) -> str:
        """scheme://host:port/path, never userinfo or a query."""
        parts = urlsplit(self.base_url)
        return urlunsplit((parts.scheme, host_and_port(parts), parts.path.rstrip("/"), "", ""))

    @classmethod
    def from_env(
        cls,
        base_url: str,
        env: Mapping[str, str],
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> HttpSettings:
        return cls(
            base_url=base_url,
            auth=HttpAuth.from_env(env, username=username, password=password),
            timeout=_number(env, TIMEOUT, DEFAULT_TIMEOUT, minimum=0.1),
            retries=int(_number(env, RETRIES, DEFAULT_RETRIES, minimum=0)),
            backoff=_number(env, BACKOFF, DEFAULT_BACKOFF, minimum=0.0),
            limits=LiveLimits.from_env(env),
        )


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = minimum - 1
    if not value >= minimum or value != value:
        raise StoreError(f"{name} is {text!r}: set it to a number of at least {minimum:g}, or unset it.")
    return value


@dataclass(frozen=True)
class HttpResponse:
    """What a server answered: status, body, and its JSON error message if it sent one."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message(self) -> str:
        """The server's error message (Spring's {"message": ...}), on one line, redacted."""
        try:
            data = json.loads(self.body)
        except ValueError:
            text = self.body.decode("utf-8", "replace")
        else:
            text = str(data.get("message") or data.get("error") or "") if isinstance(data, dict) else ""
        return redact(" ".join(text.split()))[:500]


class TransportError(StoreError):
    """No answer: the connection failed or timed out (the request may or may not have landed)."""


class HttpClient:
    """A requests session against one server; reads retried with backoff, writes sent once."""

    def __init__(
        self,
        settings: HttpSettings,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self._sleep = sleep
        auth = settings.auth
        if auth.client_cert is not None and auth.client_key is not None:
            self.session.cert = (str(auth.client_cert), str(auth.client_key))
        if auth.ca_bundle is not None:
            self.session.verify = str(auth.ca_bundle)
        if auth.username is not None:
            self.session.auth = (auth.username, auth.password or "")

    def describe(self) -> str:
        return self.settings.describe()

    def _headers(self, user: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        auth = self.settings.auth
        if auth.token_file is not None:
            headers["Authorization"] = f"Bearer {_secret_file(auth.token_file, TOKEN_FILE)}"
        if auth.cookie_file is not None:
            cookie = _secret_file(auth.cookie_file, COOKIE_FILE)
            headers["Cookie"] = cookie if "=" in cookie else f"{SESSION_COOKIE}={cookie}"
        if user is not None:
            headers["X-SPINNAKER-USER"] = user
        return headers

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        user: str | None = None,
    ) -> HttpResponse:
        """One request, once. A connection failure or timeout raises TransportError."""
        url = self.settings.base_url.rstrip("/") + path
        headers = self._headers(user)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method, url, params=params, data=body, headers=headers, timeout=self.settings.timeout
            )
        except requests.RequestException as exc:
            raise TransportError(
                f"{method} {self.describe()}{path} got no answer ({type(exc).__name__}: {_reason(exc)})"
            ) from None
        return HttpResponse(response.status_code, response.content)

    def get(
        self, path: str, *, params: Mapping[str, str] | None = None, user: str | None = None
    ) -> HttpResponse:
        """A GET, retried with exponential backoff on no answer, 429 and 5xx; the last answer
        (or TransportError) once retries are spent."""
        attempt = 0
        while True:
            try:
                response = self.send("GET", path, params=params, user=user)
                if response.status not in RETRIED_STATUSES:
                    return response
                if attempt >= self.settings.retries:
                    return response
            except TransportError:
                if attempt >= self.settings.retries:
                    raise
            self.pause(attempt)
            attempt += 1

    def pause(self, attempt: int) -> None:
        """Wait before retry number attempt + 1: backoff doubled each time, capped."""
        self._sleep(min(self.settings.backoff * (2**attempt), MAX_BACKOFF))


def _reason(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))[:300] or type(exc).__name__
