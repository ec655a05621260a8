"""Front50's pipelines through its REST API, directly (front50+http) or through Gate (gate+http).

Endpoints follow Front50's `PipelineController` and `v2/ApplicationsController` and Gate's
`PipelineController`, `PipelineConfigController` and `ApplicationController` (docs/http-store.md).

Front50's API has no compare-and-swap (its stale check never runs for JSON bodies), so the
precondition token is the SHA-256 of the pipeline's canonical JSON as the API returns it, and
every write or delete re-reads the pipeline immediately before it and refuses when the token
moved. What is left is the window between that re-read and the write (`PRECONDITION_NOTICE`).
A write whose answer was lost (a 5xx, a timeout) is never resent blindly: the pipeline is read
again, and the write counts as done when it holds exactly what was sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.live import LiveObject, parse_live
from pipeline_sync.provenance import content_digest, marker_of
from pipeline_sync.store import ObjectVersion, PermissionRefusedError, WriteResult
from pipeline_sync.store.front50 import WRITER, application_document
from pipeline_sync.store.http_client import RETRIED_STATUSES, HttpClient, HttpResponse, TransportError

HISTORY_LIMIT = 100
TASK_TIMEOUT_SECONDS = 60.0
POLICY_PREFIX = "policy:"
PRECONDITION_NOTICE = (
    "Front50's API has no compare-and-swap: apply re-reads each pipeline just before writing or "
    "deleting it and refuses if it changed since the plan, but an edit landing between that re-read "
    "and the write (milliseconds) is overwritten. See docs/http-store.md."
)
# Words in Spinnaker's answers that mean "refused by Fiat" (FiatAccessDeniedExceptionHandler,
# PipelineController.validatePipelines) and "duplicate name" (checkForDuplicatePipeline).
_DENIED = ("access denied", "access is denied", "does not have write permission", "runasuser permission")
_DUPLICATE = "already exists"


def document_token(document: Mapping[str, Any]) -> str:
    """A pipeline's precondition token: the SHA-256 of its canonical JSON as the API returns it
    (updateTs included, so any save moves it)."""
    return sha256_hex(canonical_json(document))


def holds(obj: LiveObject | None, sent: Mapping[str, Any]) -> bool:
    """Whether a pipeline read back is the one sent, up to what Front50 fills in on save
    (triggers, schema, updateTs, lastModifiedBy): same content and the same marker (its writeId
    makes every write of pipeline-sync unique)."""
    if obj is None or obj.document is None:
        return False
    return _same_write(obj.document, sent)


class Front50HttpStore:
    """Front50's REST API, called as the other Spinnaker services call it: X-SPINNAKER-USER
    names the user each write is made as (the approver; Fiat checks that user's permissions)."""

    scheme = "front50"
    # The engine names the approver as the body's lastModifiedBy (engine.modifier_of); it is sent
    # as X-SPINNAKER-USER, which Front50 records as lastModifiedBy.
    records_modifier = True
    # The engine passes the approver to delete_pipeline(user=...): a delete has no body.
    acts_as_approver = True
    precondition_notice = PRECONDITION_NOTICE

    def __init__(self, client: HttpClient, *, policy_user: str | None = None) -> None:
        self.client = client
        self.policy_user = policy_user
        self._ids: dict[str, str] = {}  # lower-case id -> the id as Front50 spells it
        self._applications: dict[str, str] = {}  # lower-case id -> its application, as last read
        self._listed = False  # whether read_live listed every pipeline (and so every id's spelling)
        self._known_applications: set[str] = set()
        # History versions seen, by (lower-case id, token): a token is the SHA-256 of the version's
        # own JSON, so what is kept under it can only ever be that version (read_pipeline_version).
        self._seen_versions: dict[tuple[str, str], dict[str, Any]] = {}

    def describe(self) -> str:
        return f"{self.scheme}+{self.client.describe()}"

    # -- endpoints (Gate overrides these) -----------------------------------
    def _list(self) -> list[Any]:
        # PipelineController.list: restricted=false skips the READ filter, as Echo lists.
        return self._get_json("/pipelines", {"restricted": "false"}, "list the pipelines")

    def _get_one(self, pipeline_id: str) -> dict[str, Any] | None:
        # PipelineController.get: 404 (NotFoundException) when there is no such pipeline.
        response = self.client.get(f"/pipelines/{_seg(pipeline_id)}/get")
        if response.status == 404:
            return None
        return self._expect_object(response, f"read pipeline {pipeline_id}")

    def _history(self, pipeline_id: str) -> list[Any]:
        return self._get_json(
            f"/pipelines/{_seg(pipeline_id)}/history",
            {"limit": str(HISTORY_LIMIT)},
            f"read the history of pipeline {pipeline_id}",
        )

    def _resolve_name(self, application: str, name: str) -> str | None:
        # PipelineController.getByApplicationAndName: the pipeline a name resolves to, or 404.
        response = self.client.get(
            f"/pipelines/{_seg(application)}/name/{_seg(name)}", params={"refresh": "true"}
        )
        if response.status == 404:
            return None
        found = self._expect_object(response, f"resolve pipeline {name!r} of application {application}")
        return str(found.get("id", "")) or None

    def _save(self, body: bytes, user: str | None) -> HttpResponse:
        # PipelineController.save: an upsert by id; Fiat needs WRITE on the application and access
        # to every runAsUser service account (PUT /pipelines/{id} skips the latter check).
        return self.client.send("POST", "/pipelines", body=body, user=user)

    def _delete(self, application: str, name: str, user: str | None) -> HttpResponse:
        # PipelineController.delete: by application and name only (there is no delete by id).
        return self.client.send("DELETE", f"/pipelines/{_seg(application)}/{_seg(name)}", user=user)

    def _application_exists(self, application: str) -> bool:
        # v2/ApplicationsController.get: 404 when Front50 has no such application.
        response = self.client.get(f"/v2/applications/{_seg(application)}")
        if response.status == 404:
            return False
        self._expect_object(response, f"read application {application}")
        return True

    def read_application(self, application: str) -> dict[str, Any] | None:
        """Front50's application object (its email, ...), or None when absent or not a JSON object
        (import creates a missing service file from it)."""
        response = self.client.get(self._application_path(application))
        if response.status == 404:
            return None
        return self._application_object(self._expect_object(response, f"read application {application}"))

    def _application_path(self, application: str) -> str:
        return f"/v2/applications/{_seg(application)}"  # v2/ApplicationsController.get

    def _application_object(self, document: object) -> dict[str, Any] | None:
        return document if isinstance(document, dict) else None

    def _create_application(self, application: str, email: str | None) -> None:
        # v2/ApplicationsController.create (Fiat: canCreate APPLICATION); a create whose answer was
        # lost is settled by reading the application again, as a pipeline write is.
        body = json.dumps(application_document(application, email)).encode()
        last = ""
        for attempt in range(self.client.settings.retries + 1):
            if attempt and self._application_exists(application):
                return
            try:
                response = self.client.send("POST", "/v2/applications", body=body, user=WRITER)
            except TransportError as exc:
                last = str(exc)
            else:
                if response.status == 200:
                    return
                if response.status == 403:
                    raise PermissionRefusedError(
                        f"permission refused: {self.describe()} would not create application "
                        f"{application} as user {WRITER} "
                        f"(Spinnaker said: {response.message or 'Forbidden'}); "
                        "nothing was written. Create the application in Deck, or let that user create "
                        "applications in Fiat."
                    )
                if response.status not in RETRIED_STATUSES:
                    if self._application_exists(application):
                        return  # created meanwhile (Front50 answers 400 "Application already exists")
                    raise StoreError(self._failure(f"create application {application}", response))
                last = f"HTTP {response.status} {response.message}".rstrip()
            self.client.pause(attempt)
        if not self._application_exists(application):
            raise StoreError(
                f"cannot create application {application} in {self.describe()}: it failed "
                f"{self.client.settings.retries + 1} times (last: {last}). Run apply again later."
            )

    def _user(self) -> str | None:
        """Who a write without a named user is made as (Gate: the authenticated user)."""
        return None

    # -- plumbing -----------------------------------------------------------
    def _get_json(self, path: str, params: Mapping[str, str] | None, what: str) -> list[Any]:
        data: list[Any] = self._json_of(self.client.get(path, params=params), what, list)
        return data

    def _expect_object(self, response: HttpResponse, what: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json_of(response, what, dict)
        return data

    def _json_of(
        self, response: HttpResponse, what: str, shape: type[list[Any]] | type[dict[str, Any]]
    ) -> Any:
        """The JSON of a 200 answer of shape (a list or an object), else a StoreError naming what failed."""
        if response.status != 200:
            raise StoreError(self._failure(what, response))
        try:
            data = response.json()
        except ValueError as exc:
            raise StoreError(f"cannot {what} in {self.describe()}: the answer is not JSON ({exc}).") from None
        if not isinstance(data, shape):
            noun = "a JSON list" if shape is list else "a JSON object"
            raise StoreError(f"cannot {what} in {self.describe()}: the answer is not {noun}.")
        return data

    def _failure(self, what: str, response: HttpResponse) -> str:
        detail = f": {response.message}" if response.message else ""
        hint = ""
        if response.status in (401, 403):
            hint = " Check the credentials (docs/http-store.md) and that their user may read every pipeline."
        elif response.status in RETRIED_STATUSES:
            hint = f" (after {self.client.settings.retries} retries) Try again later."
        return f"cannot {what} in {self.describe()}: HTTP {response.status}{detail}.{hint}"

    def _key(self, pipeline_id: str) -> str:
        return f"pipelines/{pipeline_id}"

    def _spelling(self, pipeline_id: str) -> str:
        return self._ids.get(pipeline_id.lower(), pipeline_id)

    def _live(self, document: dict[str, Any]) -> LiveObject | None:
        raw_id = document.get("id")
        if not isinstance(raw_id, str) or not raw_id:
            return None
        pipeline_id = raw_id.lower()
        self._ids[pipeline_id] = raw_id
        if isinstance(document.get("application"), str):
            self._applications[pipeline_id] = document["application"]
        body = canonical_json(document).encode("utf-8")
        token = sha256_hex(body.decode("utf-8"))
        return parse_live(pipeline_id, self._key(pipeline_id), token, body, self.client.settings.limits)

    # -- reads --------------------------------------------------------------
    def read_live(self) -> dict[str, LiveObject]:
        """Every pipeline the API lists, by lower-case id."""
        live = {}
        for item in self._list():
            if isinstance(item, dict) and (obj := self._live(item)) is not None:
                live[obj.pipeline_id] = obj
        self._listed = True
        return live

    def read_pipeline(self, pipeline_id: str) -> LiveObject | None:
        document = self._get_one(self._spelling(pipeline_id))
        return self._live(document) if document is not None else None

    def keeps_history(self) -> bool:
        return True

    def _versions(self, pipeline_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(token, version) of each version in Front50's history, newest first; each is kept for
        read_pipeline_version."""
        history = self._history(self._spelling(pipeline_id))
        versions = [(document_token(v), v) for v in history if isinstance(v, dict)]
        for token, document in versions:
            self._seen_versions[(pipeline_id.lower(), token)] = document
        return versions

    def pipeline_versions(self, pipeline_id: str) -> list[ObjectVersion]:
        """The history Front50 keeps, newest first; a version's id is its token."""
        current = self.read_pipeline(pipeline_id)
        versions = []
        for index, (token, document) in enumerate(self._versions(pipeline_id)):
            versions.append(
                ObjectVersion(
                    version_id=token,
                    etag=token,
                    last_modified=_iso(document.get("updateTs")),
                    is_latest=index == 0 and current is not None and current.etag == token,
                )
            )
        return versions

    def read_pipeline_version(self, pipeline_id: str, version_id: str) -> LiveObject:
        """A version from Front50's history. One pipeline_versions listed already is not read
        again: its token is its content's hash, so the copy seen then is that version."""
        seen = self._seen_versions.get((pipeline_id.lower(), version_id))
        versions = [(document_token(seen), seen)] if seen is not None else self._versions(pipeline_id)
        for token, document in versions:
            if token == version_id:
                body = canonical_json(document).encode("utf-8")
                key = self._key(pipeline_id.lower())
                return parse_live(pipeline_id.lower(), key, version_id, body, self.client.settings.limits)
        raise StoreError(
            f"cannot read version {version_id} of pipeline {pipeline_id}: the last {HISTORY_LIMIT} "
            f"versions {self.describe()} keeps do not include it."
        )

    # -- writes -------------------------------------------------------------
    def _writer(self, named: object) -> str | None:
        """Who a write is made as: the user the body names (the approver), except that a stack
        policy's approval is made as the policy user (PIPELINE_SYNC_HTTP_POLICY_USER) or pipeline-sync."""
        if not isinstance(named, str) or not named:
            return self._user()
        if named.lower().startswith(POLICY_PREFIX):
            return self.policy_user or WRITER
        return named

    def put_pipeline(self, pipeline_id: str, body: bytes, *, if_match: str | None) -> WriteResult:
        """Save the pipeline only while a fresh read still shows the token the plan saw (if_match;
        None: still absent). An answer lost to a 5xx or a timeout is settled by reading again: the
        write is done when the pipeline holds what was sent, retried while it still holds if_match."""
        pipeline_id = pipeline_id.lower()
        key = self._key(pipeline_id)
        try:
            sent = json.loads(body)
        except ValueError as exc:
            raise StoreError(f"cannot write {key}: its body is not JSON ({exc}).") from None
        if not isinstance(sent, dict):
            raise StoreError(f"cannot write {key}: its body is not a JSON object.")
        user = self._writer(sent.get("lastModifiedBy"))
        if isinstance(sent.get("id"), str) and sent["id"].lower() == pipeline_id:
            self._ids[pipeline_id] = sent["id"]  # Gate matches ids exactly: read it as it is spelled
        if isinstance(sent.get("application"), str):
            self._applications.setdefault(pipeline_id, sent["application"])
        last = ""
        for attempt in range(self.client.settings.retries + 1):
            current = self.read_pipeline(pipeline_id)
            if holds(current, sent) and (current is None or current.etag != if_match):
                assert current is not None  # an earlier attempt landed
                return self._settled(pipeline_id, current, sent, if_match)
            if (current.etag if current is not None else None) != if_match:
                raise StalePlanError(_stale(key, if_match, current))
            try:
                response = self._save(body, user)
            except TransportError as exc:
                last = str(exc)
            else:
                if response.status == 200:
                    return self._confirm(pipeline_id, sent, if_match)
                if response.status not in RETRIED_STATUSES:
                    self._refuse(response, key, sent, user)
                last = f"HTTP {response.status} {response.message}".rstrip()
            self.client.pause(attempt)
        current = self.read_pipeline(pipeline_id)
        if holds(current, sent):
            assert current is not None
            return self._settled(pipeline_id, current, sent, if_match)
        raise StoreError(
            f"cannot write {key}: {self.describe()} failed {self.client.settings.retries + 1} times "
            f"(last: {last}); a fresh read shows it was not written. Run apply again later."
        )

    def _confirm(self, pipeline_id: str, sent: Mapping[str, Any], if_match: str | None) -> WriteResult:
        """Read the pipeline back after a save: it must hold what was sent. Then look in Front50's
        history for saves that landed between the re-read and this save (the race window)."""
        key = self._key(pipeline_id)
        current = self.read_pipeline(pipeline_id)
        if not holds(current, sent):
            raise StoreError(
                f"{key} was saved, but a fresh read shows something else: another writer saved it right "
                "after. Run `pipeline-sync plan` to see what it holds now."
            )
        assert current is not None
        return self._settled(pipeline_id, current, sent, if_match)

    def _settled(
        self, pipeline_id: str, current: LiveObject, sent: Mapping[str, Any], if_match: str | None
    ) -> WriteResult:
        """The result of a write now held by the pipeline, once history shows it overwrote nothing."""
        if if_match is not None:
            self._check_overwrites(pipeline_id, current.etag, sent, if_match)
        return _written(self._key(pipeline_id), current)

    def _check_overwrites(
        self, pipeline_id: str, written: str, sent: Mapping[str, Any], if_match: str
    ) -> None:
        """Raise when history shows saves between the version the plan saw (if_match) and ours
        (other than an earlier landing of this very write, whose answer was lost).

        Silent when the history does not show both versions (a store without versioning, or a
        history whose bodies differ from what the API serves): it can only report, never guess.
        """
        try:
            versions = self._versions(pipeline_id)
        except StoreError:
            return
        tokens = [token for token, _ in versions]
        if written not in tokens or if_match not in tokens:
            return
        ours, seen = tokens.index(written), tokens.index(if_match)
        between = [v for _, v in versions[ours + 1 : seen] if not _same_write(v, sent)]
        if not between:
            return
        who = (
            ", ".join(sorted({str(v["lastModifiedBy"]) for v in between if v.get("lastModifiedBy")}))
            or "someone"
        )
        raise StoreError(
            f"{self._key(pipeline_id)} was saved as approved, but {len(between)} "
            f"{'saves' if len(between) > 1 else 'save'} by {who} landed between the re-read and this "
            f"write and {'were' if len(between) > 1 else 'was'} overwritten (the race window "
            "docs/http-store.md describes). Front50's history keeps every version: compare with "
            "`pipeline-sync rollback KEY --list` and restore or re-apply."
        )

    def _refuse(self, response: HttpResponse, key: str, sent: Mapping[str, Any], user: str | None) -> None:
        """Raise what a 4xx means: a permission refusal, a name taken since the plan, or a failure."""
        message = response.message
        application = str(sent.get("application", "?"))
        lowered = message.lower()
        if response.status == 403 or any(word in lowered for word in _DENIED):
            raise PermissionRefusedError(self._denied(key, application, user, message, sent))
        if _DUPLICATE in lowered:
            raise StalePlanError(
                f"conflict: {self.describe()} refused {key}: {message}. Another pipeline took the name "
                "since the plan; nothing was written. Run `pipeline-sync plan` again."
            )
        raise StoreError(f"cannot write {key}: {self.describe()} answered HTTP {response.status}: {message}")

    def _denied(
        self, key: str, application: str, user: str | None, message: str, sent: Mapping[str, Any] | None
    ) -> str:
        who = user or self._user() or "anonymous"
        accounts = sorted(
            {
                str(t["runAsUser"])
                for t in (sent or {}).get("triggers") or []
                if isinstance(t, dict) and t.get("runAsUser")
            }
        )
        needs = f"WRITE permission on application {application}"
        if accounts:
            plural = "s" if len(accounts) > 1 else ""
            needs += f" and access to the service account{plural} {', '.join(accounts)} (runAsUser)"
        return (
            f"permission refused: {self.describe()} would not change {key} as user {who}, who needs {needs} "
            f"(Spinnaker said: {message or 'Forbidden'}); nothing was written. Have someone with that "
            "permission approve, or grant it in Fiat."
        )

    def delete_pipeline(self, pipeline_id: str, *, if_match: str, user: str | None = None) -> WriteResult:
        """Delete by application and name, only while a fresh read shows the token the plan saw
        and the name still resolves to this id; a pipeline already gone stays so."""
        pipeline_id = pipeline_id.lower()
        key = self._key(pipeline_id)
        who = self._writer(user)
        last = ""
        for attempt in range(self.client.settings.retries + 1):
            current = self.read_pipeline(pipeline_id)
            if current is None:
                return WriteResult(key=key, etag=None, version_id=None)
            if current.etag != if_match:
                raise StalePlanError(_stale(key, if_match, current))
            document = current.document or {}
            application, name = document.get("application"), document.get("name")
            if not isinstance(application, str) or not isinstance(name, str):
                raise StoreError(f"cannot delete {key}: it has no application or name to delete it by.")
            resolved = self._resolve_name(application, name)
            if resolved is None or resolved.lower() != pipeline_id:
                raise StalePlanError(
                    f"stale plan: the name {name!r} in application {application} now resolves to "
                    f"{resolved or 'no pipeline'}, not {pipeline_id}; nothing was deleted. "
                    "Run `pipeline-sync plan` again and approve the new plan."
                )
            try:
                response = self._delete(application, name, who)
            except TransportError as exc:
                last = str(exc)
            else:
                if response.status in (200, 204):
                    if self.read_pipeline(pipeline_id) is not None:
                        raise StoreError(
                            f"{key} was deleted, but a fresh read still finds it. Run `pipeline-sync plan`."
                        )
                    return WriteResult(key=key, etag=None, version_id=None)
                if response.status == 403 or any(word in response.message.lower() for word in _DENIED):
                    raise PermissionRefusedError(self._denied(key, application, who, response.message, None))
                if response.status not in RETRIED_STATUSES:
                    raise StoreError(
                        f"cannot delete {key}: {self.describe()} answered "
                        f"HTTP {response.status}: {response.message}"
                    )
                last = f"HTTP {response.status} {response.message}".rstrip()
            self.client.pause(attempt)
        if self.read_pipeline(pipeline_id) is None:
            return WriteResult(key=key, etag=None, version_id=None)
        raise StoreError(
            f"cannot delete {key}: {self.describe()} failed {self.client.settings.retries + 1} times "
            f"(last: {last}); a fresh read shows it is still there. Run apply again later."
        )

    def ensure_application(self, application: str, email: str | None) -> bool:
        """Create the application when Front50 does not know it; True when created."""
        app_id = application.lower()
        if app_id in self._known_applications:
            return False
        created = False
        if not self._application_exists(application):
            self._create_application(application, email)
            created = True
        self._known_applications.add(app_id)
        return created

    def repair_change_signals(self) -> list[str]:
        """Nothing to repair: Front50 updates its own cache and change signal on every API save."""
        return []


class GateStore(Front50HttpStore):
    """Front50's pipelines through Gate, as a person or CI calls it: writes run as Orca tasks made
    as the user Gate authenticated (client certificate, basic auth, bearer token or session)."""

    scheme = "gate"
    records_modifier = True
    acts_as_approver = False  # Gate makes every write as the authenticated user

    def __init__(self, client: HttpClient, *, policy_user: str | None = None) -> None:
        super().__init__(client, policy_user=policy_user)
        self._whoami: str | None = None

    def _writer(self, named: object) -> str | None:
        return None  # Gate ignores X-SPINNAKER-USER from outside: it sets it from the session

    def _user(self) -> str | None:
        """The user Gate authenticates these credentials as (AuthController /auth/user)."""
        if self._whoami is None:
            try:
                response = self.client.get("/auth/user")
                data = response.json() if response.status == 200 else {}
            except (StoreError, ValueError):
                data = {}
            name = data.get("username") if isinstance(data, dict) else None
            self._whoami = str(name) if name else "the user Gate authenticates these credentials as"
        return self._whoami

    def _list(self) -> list[Any]:
        # PipelineConfigController.getAllPipelineConfigs -> Front50 GET /pipelines.
        return self._get_json("/pipelineConfigs", None, "list the pipelines")

    def _get_one(self, pipeline_id: str) -> dict[str, Any] | None:
        # ApplicationController.getPipelineConfig -> ApplicationService.getPipelineConfigForApplication:
        # Front50 by name in the application first, then by id (GET /pipelines/{id}/get), 404 when
        # neither. The application only serves the name query: the last listing's, else any.
        application = self._applications.get(pipeline_id.lower(), "-")
        response = self.client.get(f"/applications/{_seg(application)}/pipelineConfigs/{_seg(pipeline_id)}")
        if response.status == 404 and (self._listed or pipeline_id.lower() in self._ids):
            # Gate compares ids exactly: the id as Front50 spells it (from a write, or a listing that
            # would have shown any other spelling) is not there.
            return None
        if response.status != 404:
            found = self._expect_object(response, f"read pipeline {pipeline_id}")
            if str(found.get("id", "")).lower() == pipeline_id.lower():
                return found
        # An id whose spelling this process has not seen, or a pipeline named like this id answered
        # first: the listing decides.
        for item in self._list():
            if isinstance(item, dict) and str(item.get("id", "")).lower() == pipeline_id.lower():
                return item
        return None

    def _history(self, pipeline_id: str) -> list[Any]:
        return self._get_json(
            f"/pipelineConfigs/{_seg(pipeline_id)}/history",
            {"limit": str(HISTORY_LIMIT)},
            f"read the history of pipeline {pipeline_id}",
        )

    def _resolve_name(self, application: str, name: str) -> str | None:
        # ApplicationController.getPipelineConfig -> Front50 GET /pipelines/{app}/name/{name}.
        response = self.client.get(f"/applications/{_seg(application)}/pipelineConfigs/{_seg(name)}")
        if response.status == 404:
            return None
        found = self._expect_object(response, f"resolve pipeline {name!r} of application {application}")
        return str(found.get("id", "")) or None

    def _save(self, body: bytes, user: str | None) -> HttpResponse:
        # PipelineController.savePipeline: an Orca savePipeline task, awaited; 200 on success, a
        # 400 (PipelineException) carrying Front50's refusal otherwise.
        return self.client.send("POST", "/pipelines", body=body)

    def _delete(self, application: str, name: str, user: str | None) -> HttpResponse:
        # PipelineController.deletePipeline: an Orca deletePipeline task, awaited.
        return self.client.send("DELETE", f"/pipelines/{_seg(application)}/{_seg(name)}")

    def _application_path(self, application: str) -> str:
        return f"/applications/{_seg(application)}"  # ApplicationController.getApplication

    def _application_object(self, document: object) -> dict[str, Any] | None:
        # Gate answers {"name": ..., "attributes": {Front50's application object}, "clusters": ...}.
        attributes = document.get("attributes") if isinstance(document, dict) else None
        return attributes if isinstance(attributes, dict) else None

    def _application_exists(self, application: str) -> bool:
        # ApplicationController.getApplication: 404 when neither Front50 nor Clouddriver knows it.
        response = self.client.get(f"/applications/{_seg(application)}")
        if response.status == 404:
            return False
        self._expect_object(response, f"read application {application}")
        return True

    def _create_application(self, application: str, email: str | None) -> None:
        # ApplicationController.invokeTask: Orca's createApplication task, polled at /tasks/{id}.
        document = application_document(application, email)
        task = {
            "application": application,
            "description": f"Create Application: {application}",
            "job": [{"type": "createApplication", "application": document}],
        }
        response = self.client.send(
            "POST", f"/applications/{_seg(application)}/tasks", body=json.dumps(task).encode()
        )
        if response.status == 403:
            raise PermissionRefusedError(
                f"permission refused: {self.describe()} would not create application {application} as user "
                f"{self._user()} (Spinnaker said: {response.message or 'Forbidden'}); nothing was written."
            )
        ref = self._expect_object(response, f"create application {application}").get("ref")
        if not isinstance(ref, str) or not ref.startswith("/"):
            raise StoreError(f"cannot create application {application}: Gate answered no task reference.")
        deadline = time.monotonic() + TASK_TIMEOUT_SECONDS
        attempt = 0
        while time.monotonic() < deadline:
            status = str(self._expect_object(self.client.get(ref), f"follow task {ref}").get("status", ""))
            if status == "SUCCEEDED":
                return
            if status in {"TERMINAL", "FAILED_CONTINUE", "CANCELED", "STOPPED"}:
                raise StoreError(
                    f"cannot create application {application}: Gate's task {ref} ended {status}."
                )
            self.client.pause(min(attempt, 3))
            attempt += 1
        raise StoreError(
            f"cannot create application {application}: Gate's task {ref} did not finish in "
            f"{TASK_TIMEOUT_SECONDS:g} s; it may still. Run apply again later."
        )


def _same_write(version: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """Whether a stored version is a landing of the write sent (content and marker, writeId included)."""
    return content_digest(version) == content_digest(sent) and marker_of(version) == marker_of(sent)


def _written(key: str, current: LiveObject) -> WriteResult:
    """A write's result: the token of what the pipeline holds now, also its history version id."""
    return WriteResult(key=key, etag=current.etag, version_id=current.etag)


def _seg(value: str) -> str:
    """One URL path segment."""
    return quote(value, safe="")


def _iso(update_ts: object) -> str:
    text = str(update_ts) if isinstance(update_ts, str | int) and not isinstance(update_ts, bool) else ""
    if not (text.isascii() and text.isdigit()):
        return ""
    return datetime.fromtimestamp(int(text) / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _stale(key: str, if_match: str | None, current: LiveObject | None) -> str:
    seen = f"token {if_match[:12]}" if if_match else "absent"
    now = f"token {current.etag[:12]}" if current is not None else "absent"
    return (
        f"stale plan: {key} is no longer what the plan saw ({seen}; now {now}); nothing was written. "
        "Run `pipeline-sync plan` again and approve the new plan."
    )
