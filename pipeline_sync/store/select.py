"""Which store holds Front50's pipelines: one choice (--store, PIPELINE_SYNC_STORE) for every entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from pipeline_sync.errors import StoreError
from pipeline_sync.redact import redact_url
from pipeline_sync.store import Store
from pipeline_sync.store.s3 import S3Settings, S3Store

STORE_VARIABLE = "PIPELINE_SYNC_STORE"
DEFAULT_ROOT = "front50"
SQL_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql"}
ACCEPTED = (
    "s3://BUCKET/ROOT (ROOT defaults to 'front50'), "
    "postgresql://HOST:PORT/DATABASE (user in the URL or PGUSER) or "
    "mysql://HOST:PORT/DATABASE (user in the URL, password in it, MYSQL_PWD or ~/.my.cnf)"
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


def _fix() -> str:
    return f"pass --store or set {STORE_VARIABLE} to {ACCEPTED}."
