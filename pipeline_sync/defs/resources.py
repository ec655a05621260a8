"""Resources: the catalog on disk and Front50's bucket, configured from the environment at run time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from pipeline_sync import engine
from pipeline_sync.cachefiles import CacheSettings
from pipeline_sync.rendering import Sources
from pipeline_sync.store import Store
from pipeline_sync.store.s3 import S3Settings, S3Store
from pipeline_sync.store.select import open_store

from .operator import fleet_status_checks, fleet_status_checks_max


class CatalogResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the catalog and templates live. Leave empty to use PIPELINE_SYNC_CATALOG and
    PIPELINE_SYNC_TEMPLATES (default: catalog/ and templates/ of the working directory)."""

    catalog_dir: str | None = None
    templates_dir: str | None = None
    # Resources are made anew for every run: the catalog is loaded once per run, however many
    # assets of the run ask for it.
    _loaded: dict[CacheSettings | None, Sources] = PrivateAttr(default_factory=dict)

    def workspace(self, caches: CacheSettings | None = None) -> Sources:
        """The catalog and templates; caches (Front50Resource.caches()) places the render cache."""
        if caches not in self._loaded:
            catalog = self.catalog_dir or os.environ.get("PIPELINE_SYNC_CATALOG", "catalog")
            templates = self.templates_dir or os.environ.get("PIPELINE_SYNC_TEMPLATES", "templates")
            self._loaded[caches] = engine.load_workspace(Path(catalog), Path(templates), caches)
        return self._loaded[caches]


# The docstrings of resources are what the launchpad shows an operator; notes for maintainers
# stay in comments. Fields are plain optionals rather than EnvVar: an unset EnvVar fails every
# run at config time, even for optional settings. The store is the first of: store_url, the S3
# bucket that bucket (and root) name, PIPELINE_SYNC_STORE, the bucket PIPELINE_SYNC_BUCKET (and
# PIPELINE_SYNC_ROOT) name; a URL is read as the CLI's --store is (pipeline_sync.store.select).
class Front50Resource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Front50's store (its S3 bucket or SQL database). Leave fields empty to use the
    PIPELINE_SYNC_* settings of the code location. Never put credentials here: run config is
    visible in the UI. status_checks: what reconcile_job records of each changed partition's
    status checks: failing (default), all, or none (fewest events; status shows after a
    one-partition plan). status_checks_max: above this many partitions with checks to record
    (default 100), reconcile_job records none, one event per changed partition."""

    store_url: str | None = None
    bucket: str | None = None
    root: str | None = None
    endpoint_url: str | None = None
    cache_dir: str | None = None
    # Which status checks reconcile_job records per changed partition: failing (the default), all,
    # or none (one event per changed partition); empty: PIPELINE_SYNC_STATUS_CHECKS. Here because
    # every asset already takes this resource: a new resource would break every caller's resources.
    status_checks: str | None = None
    # Above this many changed partitions with check events, reconcile_job records none (issue 19:
    # one event per changed partition in a large batch); empty: PIPELINE_SYNC_STATUS_CHECKS_MAX.
    status_checks_max: int | None = None

    def settings(self) -> S3Settings:
        return S3Settings.from_env(self._environment())

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.bucket:
            env["PIPELINE_SYNC_BUCKET"] = self.bucket
        if self.root:
            env["PIPELINE_SYNC_ROOT"] = self.root
        if self.endpoint_url:
            env["PIPELINE_SYNC_ENDPOINT_URL"] = self.endpoint_url
        if self.cache_dir:
            env["PIPELINE_SYNC_CACHE_DIR"] = self.cache_dir
        return env

    def store(self) -> Store:
        """A newly opened store; assets use opened(), which also closes it."""
        if not self.store_url and self.bucket:
            return S3Store(self.settings())  # configured here, so it beats the environment
        return open_store(self.store_url, self._environment())

    @contextmanager
    def opened(self) -> Iterator[Store]:
        """The store for one step, closed when the step is done: a SQL store holds a database
        connection (and checks Front50's schema when opened), which must not outlive the step."""
        store = self.store()
        try:
            yield store
        finally:
            close = getattr(store, "close", None)
            if callable(close):
                close()

    def fleet_status_checks(self) -> str:
        """failing, all or none: see operator.fleet_status_checks; a Failure names a wrong value."""
        return fleet_status_checks(self.status_checks, os.environ)

    def fleet_status_checks_max(self) -> int:
        """See operator.fleet_status_checks_max; a Failure names a wrong value."""
        return fleet_status_checks_max(self.status_checks_max, os.environ)

    def caches(self) -> CacheSettings:
        """Where both caches live: cache_dir moves the render cache too, not only the content cache."""
        return CacheSettings.from_env(directory=self.cache_dir)


def default_resources() -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    """The resources every asset and sensor uses, configured from the environment at run time."""
    return {"catalog": CatalogResource(), "front50": Front50Resource()}
