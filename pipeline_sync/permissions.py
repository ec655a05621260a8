"""Fiat's answer, before apply: may this user write what a plan would write?

Front50 and Gate check permissions only when a write arrives. Fiat answers the question up front
(fiat-web `AuthorizeController`): `GET /authorize/{user}/applications/{app}/WRITE` and
`GET /authorize/{user}/serviceAccounts/{account}` are 200 when the user has it, 404 when not.
Neither Gate nor Front50 proxies those endpoints, so the check needs Fiat's own URL
(`PIPELINE_SYNC_FIAT_URL`), reachable from inside the cluster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

from pipeline_sync.errors import StoreError
from pipeline_sync.plan import Plan, PlanEntry
from pipeline_sync.store.http_client import BACKOFF, RETRIES, TIMEOUT, HttpClient, HttpSettings

FIAT_URL = "PIPELINE_SYNC_FIAT_URL"


class Fiat:
    """Fiat's authorization endpoints, asked once per (user, resource)."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self._answers: dict[str, bool] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Fiat:
        env = os.environ if environ is None else environ
        url = env.get(FIAT_URL, "").strip()
        if not url:
            raise StoreError(
                f"checking permissions needs Fiat: set {FIAT_URL} to its URL (http://HOST:7003 in most "
                "installations; Gate and Front50 do not forward Fiat's authorize endpoints)."
            )
        # Timeouts and retries as for the store; never the store's credentials (Fiat takes none).
        patience = {k: v for k, v in env.items() if k in (TIMEOUT, RETRIES, BACKOFF)}
        return cls(HttpClient(HttpSettings.from_env(url.rstrip("/"), patience)))

    def _has(self, path: str, what: str) -> bool:
        if path not in self._answers:
            response = self.client.get(path)
            if response.status not in (200, 404):
                raise StoreError(
                    f"cannot ask {self.client.describe()} whether {what}: HTTP {response.status} "
                    f"{response.message}".rstrip()
                )
            self._answers[path] = response.status == 200
        return self._answers[path]

    def may_write(self, user: str, application: str) -> bool:
        """AuthorizeController.getUserAuthorization: WRITE on the application."""
        path = f"/authorize/{_seg(user)}/applications/{_seg(application)}/WRITE"
        return self._has(path, f"{user} may write application {application}")

    def may_run_as(self, user: str, account: str) -> bool:
        """AuthorizeController.getServiceAccount: the user may use the service account."""
        path = f"/authorize/{_seg(user)}/serviceAccounts/{_seg(account)}"
        return self._has(path, f"{user} may use service account {account}")


def permission_problems(plan: Plan, fiat: Fiat, user: str) -> list[str]:
    """One sentence per entry an apply made as user would be refused, naming what is missing."""
    problems = []
    for key, entry in plan.entries.items():
        if not entry.actionable or entry.application is None:
            continue
        missing = []
        if not fiat.may_write(user, entry.application):
            missing.append(f"WRITE on application {entry.application}")
        missing += [
            f"the service account {a} (runAsUser)" for a in _run_as(entry) if not fiat.may_run_as(user, a)
        ]
        if missing:
            problems.append(
                f"{key}: {user} lacks {' and '.join(missing)} (Fiat): an apply made as {user} would be "
                "refused; have someone with that permission approve, or grant it."
            )
    return problems


def _run_as(entry: PlanEntry) -> list[str]:
    triggers = (entry.desired or {}).get("triggers") or []
    return sorted({str(t["runAsUser"]) for t in triggers if isinstance(t, dict) and t.get("runAsUser")})


def _seg(value: str) -> str:
    return quote(value, safe="")
