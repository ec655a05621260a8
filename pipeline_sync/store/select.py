"""Which store holds Front50's pipelines: one choice (--store, PIPELINE_SYNC_STORE) for every entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from pipeline_sync.errors import StoreError
from pipeline_sync.redact import redact_url
from pipeline_sync.store import Store
from pipeline_sync.store.s3 import S3Settings, S3Store

STORE_VARIABLE = "PIPELINE_SYNC_STORE"
DEFAULT_ROOT = "front50"
SQL_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql"}
HTTP_SCHEMES = {f"{api}+{web}": (api, web) for api in ("front50", "gate") for web in ("http", "https")}
POLICY_USER = "PIPELINE_SYNC_HTTP_POLICY_USER"
ACCEPTED = (
    "s3://BUCKET/ROOT (ROOT defaults to 'front50'), "
    "postgresql://HOST:PORT/DATABASE (user in the URL or PGUSER), "
    "mysql://HOST:PORT/DATABASE (user in the URL, password in it, MYSQL_PWD or ~/.my.cnf), "
    "front50+http(s)://HOST:PORT or gate+http(s)://HOST:PORT (auth from PIPELINE_SYNC_HTTP_*)"
)


def store_url(url: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The store URL in force: url (--store) when given, else PIPELINE_SYNC_STORE, else None."""
    env = os.environ if environ is None else environ
    chosen = url if url is not None and url.strip() else env.get(STORE_VARIABLE, "")
    return chosen.strip() or None


def open_store(url: str | None = None, environ: Mapping[str, str] | None = None) -> Store:
    """The store url (--store) or PIPELINE_SYNC_STORE names; with neither, the S3 bucket that
    PIPELINE_SYNC_BUCKET and PIPELINE_SYNC_ROOT name (how pipeline-sync was always configured).

    Messages show the URL with its credentials masked, never the credentials.
    """
    env = os.environ if environ is None else environ
    chosen = store_url(url, env)
    if chosen is None:
        return S3Store(S3Settings.from_env(env))
    try:
        parts = urlsplit(chosen)
        scheme = parts.scheme.lower()
    except ValueError as exc:
        raise StoreError(f"the store URL {redact_url(chosen)} cannot be read ({exc}): {_fix()}") from None
    if scheme == "s3":
        return S3Store(_s3_settings(chosen, env))
    if scheme in SQL_SCHEMES:
        from pipeline_sync.store.sql import open_sql_store

        return open_sql_store(chosen, SQL_SCHEMES[scheme], env)
    if scheme in HTTP_SCHEMES:
        return _http_store(chosen, *HTTP_SCHEMES[scheme], env)
    shown = f"{scheme}://" if scheme else "no scheme"
    raise StoreError(f"the store URL {redact_url(chosen)} has {shown}, which is not a store: {_fix()}")


def _s3_settings(url: str, env: Mapping[str, str]) -> S3Settings:
    """S3 settings from s3://BUCKET/ROOT; the other PIPELINE_SYNC_* settings (endpoint, cache,
    limits) still come from the environment, and AWS credentials from boto3's usual places."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise StoreError(
            f"the store URL {redact_url(url)} holds credentials: an s3:// URL names only the bucket and "
            "root; give AWS credentials the usual way (AWS_PROFILE, AWS_ACCESS_KEY_ID, an instance role)."
        )
    bucket = parts.netloc
    if not bucket:
        raise StoreError(f"the store URL {redact_url(url)} names no bucket: write it as s3://BUCKET/ROOT.")
    if parts.query or parts.fragment:
        raise StoreError(
            f"the store URL {redact_url(url)} has a query or fragment, which an s3:// store does not take: "
            "write it as s3://BUCKET/ROOT."
        )
    root = parts.path.strip("/") or DEFAULT_ROOT
    return S3Settings.from_env({**env, "PIPELINE_SYNC_BUCKET": bucket, "PIPELINE_SYNC_ROOT": root})


def _http_store(url: str, api: str, web: str, env: Mapping[str, str]) -> Store:
    """Front50 (front50+http[s]://HOST:PORT[/PATH]) or Gate (gate+http[s]://...) over its REST API.

    Basic-auth credentials may be in the URL (user:password@) or in PIPELINE_SYNC_HTTP_USER and
    PIPELINE_SYNC_HTTP_PASSWORD_FILE; the other auth settings come from the environment only.
    """
    from pipeline_sync.store.front50_http import Front50HttpStore, GateStore
    from pipeline_sync.store.http_client import HttpClient, HttpSettings

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise StoreError(
            f"the store URL {redact_url(url)} must name a host (and port) and nothing after the path: "
            f"write it as {api}+{web}://HOST:PORT."
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{web}://{host}{f':{port}' if port is not None else ''}{parts.path.rstrip('/')}"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    settings = HttpSettings.from_env(base, env, username=username, password=password)
    policy_user = env.get(POLICY_USER, "").strip() or None
    kind = Front50HttpStore if api == "front50" else GateStore
    return kind(HttpClient(settings), policy_user=policy_user)


def _fix() -> str:
    return f"pass --store or set {STORE_VARIABLE} to {ACCEPTED}."
