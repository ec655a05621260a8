"""A stand-in for Front50's and Gate's REST API, written from their source, that can misbehave.

Each behaviour names the class it comes from (spinnaker/spinnaker monorepo): Front50's
`front50-web/.../controllers/PipelineController.java` (PC), `controllers/v2/ApplicationsController.java`
(AC), `front50-api/.../pipeline/Pipeline.java` (the model), Fiat's `FiatAccessDeniedExceptionHandler`
(403 text) and fiat-web `AuthorizeController` (the up-front check), Gate's
`gate-web/.../controllers/PipelineController.groovy` (GPC), `PipelineConfigController.groovy` (GPCC),
`ApplicationController.groovy` (GAC), `AuthController.groovy`, and Orca's `SavePipelineTask` (which
Gate's saves run as).

Not modelled: READ filtering of lists (every test user may read), batchUpdate, pipeline templates.
The fixtures `front50` and `gate` serve one shared state on 127.0.0.1; `serve(state, "fiat")` serves
its grants as Fiat.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it."""

    server: str  # front50 | gate
    method: str
    path: str  # decoded
    query: dict[str, str]
    user: str | None  # X-SPINNAKER-USER as sent
    authorization: str | None
    cookie: str | None
    body: Any


class Refused(Exception):
    """An HTTP error answer: Spring's error JSON with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Front50State:
    """Front50's pipelines, history and applications, Fiat's grants, and the misbehaviour switches."""

    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id as saved
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # newest first
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)  # by lower-case name
    # Fiat: None = Fiat off (everyone may do everything); else application (lower) -> users with WRITE.
    writers: dict[str, set[str]] | None = None
    # Fiat service accounts: account -> users who may use it as runAsUser.
    service_accounts: dict[str, set[str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: int = 1_700_000_000_000
    # -- misbehaviour --
    delay: float = 0.0  # seconds before every answer
    fail: dict[str, int] = field(default_factory=dict)  # method -> answer the next N with 500, doing nothing
    lose: dict[str, int] = field(default_factory=dict)  # method -> do the next N, then answer 500
    drop: dict[str, int] = field(default_factory=dict)  # method -> do the next N, then close without answer
    before_write: Callable[[Front50State], None] | None = None  # runs once, as a write arrives

    def tick(self) -> int:
        self.clock += 1000
        return self.clock

    # -- Fiat ----------------------------------------------------------------
    def require_write(self, user: str, application: str) -> None:
        # FiatAccessDeniedExceptionHandler: "Access denied to application X - required authorization: WRITE"
        if self.writers is not None and user not in self.writers.get(application.lower(), set()):
            raise Refused(403, f"Access denied to application {application} - required authorization: WRITE")

    def require_run_as(self, user: str, pipeline: dict[str, Any]) -> None:
        # AuthorizationSupport.hasRunAsUserPermission: every trigger's runAsUser must be usable.
        if self.writers is None:
            return
        for trigger in pipeline.get("triggers") or []:
            account = trigger.get("runAsUser") if isinstance(trigger, dict) else None
            if account and user not in self.service_accounts.get(account, set()):
                raise Refused(403, f"Access denied to service account {account}")

    # -- Front50 PipelineController ---------------------------------------------
    def by_application(self, application: str) -> list[dict[str, Any]]:
        return [
            p for p in self.pipelines.values() if str(p.get("application", "")).lower() == application.lower()
        ]

    def find(self, pipeline_id: str) -> dict[str, Any]:
        # PipelineDAO.findById -> NotFoundException (404). Stored ids are found case-insensitively,
        # as the S3 store lower-cases keys.
        for stored_id, pipeline in self.pipelines.items():
            if stored_id.lower() == pipeline_id.lower():
                return pipeline
        raise Refused(404, f"Object not found (key: {pipeline_id.lower()})")

    def by_name(self, application: str, name: str) -> dict[str, Any]:
        # PipelineDAO.getPipelineByName: the application's pipeline with that name, case-insensitively.
        for pipeline in self.by_application(application):
            if str(pipeline.get("name", "")).lower() == name.lower():
                return pipeline
        raise Refused(404, f"Object not found (key: {application}/{name})")

    def save(self, body: Any, user: str) -> dict[str, Any]:
        """PC.save: Fiat WRITE + runAsUser, validatePipeline, checkForDuplicatePipeline, DAO create."""
        if not isinstance(body, dict):
            raise Refused(400, "Failed to read request")
        pipeline = dict(body)
        application, name = pipeline.get("application"), pipeline.get("name")
        self.require_write(user, str(application or ""))
        self.require_run_as(user, pipeline)
        # PC.validatePipeline: InvalidEntityException when name or application is blank; name trimmed.
        if (
            not isinstance(application, str)
            or not application.strip()
            or not isinstance(name, str)
            or not name.strip()
        ):
            raise Refused(400, "A pipeline requires name and application fields")
        pipeline["name"] = name.strip()
        pipeline_id = str(pipeline.get("id") or uuid.uuid4())  # StorageServiceSupport.create gives one
        pipeline["id"] = pipeline_id
        # PC.checkForDuplicatePipeline: same name (ignoring case) under another id -> DuplicateEntityException.
        for other in self.by_application(application):
            if str(other.get("name", "")).lower() == pipeline["name"].lower() and other["id"] != pipeline_id:
                raise Refused(
                    400,
                    f"A pipeline with name {pipeline['name']} already exists in application {application}",
                )
        # Pipeline model: triggers defaults to [], getSchema() answers "1"; updateTs is lastModified as
        # text; lastModifiedBy is the X-SPINNAKER-USER (StorageServiceSupport.update).
        pipeline.setdefault("triggers", [])
        if pipeline.get("schema") in (None, ""):
            pipeline["schema"] = "1"
        pipeline.pop("lastModified", None)
        pipeline["updateTs"] = str(self.tick())
        pipeline["lastModifiedBy"] = user
        existing = next((k for k in self.pipelines if k.lower() == pipeline_id.lower()), pipeline_id)
        self.pipelines.pop(existing, None)
        self.pipelines[pipeline_id] = pipeline
        self.history.setdefault(pipeline_id.lower(), []).insert(0, json.loads(json.dumps(pipeline)))
        return pipeline

    def delete(self, application: str, name: str, user: str) -> None:
        """PC.delete: Fiat WRITE on the application; the id the name resolves to is deleted."""
        self.require_write(user, application)
        pipeline = self.by_name(application, name)
        del self.pipelines[pipeline["id"]]

    def create_application(self, body: Any, user: str) -> dict[str, Any]:
        """AC.create: ApplicationAlreadyExistsException (400) when it exists; name upper-cased."""
        if not isinstance(body, dict) or not body.get("name"):
            raise Refused(400, "Application name is required")
        key = str(body["name"]).lower()
        if key in self.applications:
            raise Refused(400, "Application already exists")
        application = {**body, "name": key.upper(), "lastModifiedBy": user, "updateTs": str(self.tick())}
        self.applications[key] = application
        return application

    # -- misbehaviour -------------------------------------------------------
    def take(self, switch: dict[str, int], method: str) -> bool:
        with self.lock:
            if switch.get(method, 0) > 0:
                switch[method] -= 1
                return True
            return False

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in {"POST", "PUT", "DELETE"}]


class _Handler(BaseHTTPRequestHandler):
    state: Front50State
    server_name = "front50"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -------------------------------------------------------------
    def _answer(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a slow answer): as a real server, carry on

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        state = self.state
        with state.lock:
            state.requests.append(
                Recorded(
                    self.server_name,
                    self.command,
                    path,
                    query,
                    self.headers.get("X-SPINNAKER-USER"),
                    self.headers.get("Authorization"),
                    self.headers.get("Cookie"),
                    body,
                )
            )
        if state.delay:
            time.sleep(state.delay)
        if state.take(state.fail, self.command):
            self._answer(
                500, {"status": 500, "error": "Internal Server Error", "message": "injected failure"}
            )
            return
        if self.command != "GET" and state.before_write is not None:
            hook, state.before_write = state.before_write, None
            hook(state)  # a concurrent edit lands after the client's re-read, before this write
        try:
            with state.lock:
                status, payload = self.route(self.command, [s for s in path.split("/") if s], query, body)
        except Refused as refused:
            status, payload = (
                refused.status,
                {
                    "status": refused.status,
                    "error": "Forbidden" if refused.status == 403 else "Bad Request",
                    "message": refused.message,
                    "path": path,
                },
            )
        if status < 400 and state.take(state.drop, self.command):
            self.close_connection = True
            self.connection.shutdown(2)  # the write landed; its answer never arrives
            self.wfile = io.BytesIO()  # nothing left to flush to the closed socket
            return
        if status < 400 and state.take(state.lose, self.command):
            status, payload = 502, {"status": 502, "error": "Bad Gateway", "message": "upstream reset"}
        self._answer(status, payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def user(self) -> str:
        # AuthenticatedRequest.getSpinnakerUser: the X-SPINNAKER-USER header, else anonymous.
        return self.headers.get("X-SPINNAKER-USER") or "anonymous"

    def route(self, method: str, seg: list[str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        state = self.state
        match method, seg:
            case "GET", ["pipelines"]:  # PC.list
                return 200, list(state.pipelines.values())
            case "GET", ["pipelines", pipeline_id, "get"]:  # PC.get
                return 200, state.find(pipeline_id)
            case "GET", ["pipelines", pipeline_id, "history"]:  # PC.getHistory (limit, default 20)
                return 200, state.history.get(pipeline_id.lower(), [])[: int(query.get("limit", "20"))]
            case "GET", ["pipelines", application, "name", name]:  # PC.getByApplicationAndName
                return 200, state.by_name(application, name)
            case "GET", ["pipelines", application]:  # PC.listByApplication: sorted, index renumbered
                found = sorted(
                    state.by_application(application), key=lambda p: str(p.get("name", "")).lower()
                )
                return 200, [{**p, "index": i} for i, p in enumerate(found)]
            case "POST", ["pipelines"]:  # PC.save
                return 200, state.save(body, self.user())
            case "PUT", ["pipelines", pipeline_id]:  # PC.update: WRITE only, no runAsUser check
                existing = state.find(pipeline_id)
                if not isinstance(body, dict) or body.get("id") != existing["id"]:
                    raise Refused(
                        400, f"The provided id doesn't match the existing pipeline id {existing['id']}"
                    )
                return 200, state.save(body, self.user())
            case "DELETE", ["pipelines", application, name]:  # PC.delete
                state.delete(application, name, self.user())
                return 200, None
            case "GET", ["v2", "applications", name]:  # AC.get
                if name.lower() not in state.applications:
                    raise Refused(404, f"Application not found (name: {name})")
                return 200, state.applications[name.lower()]
            case "POST", ["v2", "applications"]:  # AC.create
                return 200, state.create_application(body, self.user())
        raise Refused(404, f"No handler for {method} /{'/'.join(seg)}")


class _GateHandler(_Handler):
    """Gate in front of the same Front50: authenticates, then calls Front50 (through Orca for writes)."""

    server_name = "gate"
    credentials: dict[str, str]  # "Basic <b64>" / "Bearer <t>" / "SESSION=<v>" -> username
    tasks: dict[str, dict[str, Any]]

    def user(self) -> str:
        # Gate sets X-SPINNAKER-USER from the authenticated session; one sent by the client is ignored.
        for presented in (self.headers.get("Authorization"), self.headers.get("Cookie")):
            if presented and presented in self.credentials:
                return self.credentials[presented]
        raise Refused(401, "Full authentication is required to access this resource")

    def route(self, method: str, seg: list[str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        state = self.state
        user = self.user()
        match method, seg:
            case "GET", ["auth", "user"]:  # AuthController.user
                return 200, {"username": user, "roles": []}
            case "GET", ["pipelineConfigs"]:  # GPCC.getAllPipelineConfigs -> Front50 GET /pipelines
                return 200, list(state.pipelines.values())
            case "GET", ["pipelineConfigs", pipeline_id, "history"]:  # GPCC.getPipelineConfigHistory
                return 200, state.history.get(pipeline_id.lower(), [])[: int(query.get("limit", "20"))]
            case "GET", ["applications", application, "pipelineConfigs", name_or_id]:
                # GAC.getPipelineConfig -> ApplicationService.getPipelineConfigForApplication: by name
                # (Front50's case-insensitive match, kept only when the name is equal), then by id.
                try:
                    found = state.by_name(application, name_or_id)
                    if found.get("name") == name_or_id:
                        return 200, found
                except Refused:
                    pass
                found = state.find(name_or_id)
                if str(found.get("id")) != name_or_id:
                    raise Refused(404, f"Pipeline configuration not found (nameOrId: {name_or_id})")
                return 200, found
            case "GET", ["applications", application]:  # GAC.getApplication: 404 when unknown
                if application.lower() not in state.applications:
                    raise Refused(404, f"Application not found (id: {application})")
                # ApplicationService.getApplication: Front50's object under "attributes", beside
                # Clouddriver's clusters.
                found_app = state.applications[application.lower()]
                return 200, {"name": found_app.get("name"), "attributes": found_app, "clusters": {}}
            case "POST", ["pipelines"]:  # GPC.savePipeline -> Orca SavePipelineTask -> Front50 PC.save
                if isinstance(body, dict) and "index" not in body:
                    existing = next(
                        (
                            p
                            for k, p in state.pipelines.items()
                            if k.lower() == str(body.get("id", "")).lower()
                        ),
                        None,
                    )
                    if existing is not None and "index" in existing:
                        body["index"] = existing["index"]  # SavePipelineTask keeps the stored index
                try:
                    state.save(body, user)
                except Refused as refused:  # the task ends TERMINAL; Gate raises PipelineException (400)
                    raise Refused(400, refused.message) from None
                return 200, None
            case "DELETE", ["pipelines", application, name]:  # GPC.deletePipeline: by trimmed name, via Orca
                found = [
                    p
                    for p in state.by_application(application)
                    if str(p.get("name", "")).strip().lower() == name.lower()
                ]
                if found:
                    try:
                        state.delete(application, str(found[0]["name"]), user)
                    except Refused as refused:
                        raise Refused(400, refused.message) from None
                return 200, None
            case "POST", ["applications", application, "tasks"]:  # GAC.invokeTask: Orca createApplication
                task_id = uuid.uuid4().hex
                job = (body or {}).get("job", [{}])[0]
                status = "SUCCEEDED"
                try:
                    state.create_application(job.get("application"), user)
                except Refused:
                    status = "TERMINAL"
                self.tasks[task_id] = {"id": task_id, "status": status, "application": application}
                return 200, {"ref": f"/tasks/{task_id}"}
            case "GET", ["tasks", task_id]:  # TaskController.getTask
                if task_id not in self.tasks:
                    raise Refused(404, "Task not found")
                return 200, self.tasks[task_id]
        raise Refused(404, f"No handler for {method} /{'/'.join(seg)}")


@dataclass
class StandIn:
    """A running stand-in: its state, its URL, and the store URL that reaches it."""

    state: Front50State
    url: str
    kind: str

    @property
    def store_url(self) -> str:
        return f"{self.kind}+{self.url}"


class _FiatHandler(_Handler):
    """Fiat's AuthorizeController over the same grants: 200 when the user has it, 404 when not."""

    server_name = "fiat"

    def route(self, method: str, seg: list[str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        state = self.state
        match method, seg:
            case "GET", ["authorize", user, "applications", application, "WRITE"]:  # getUserAuthorization
                allowed = state.writers is None or user in state.writers.get(application.lower(), set())
                return (200, None) if allowed else (404, None)
            case "GET", ["authorize", user, "serviceAccounts", account]:  # getServiceAccount
                allowed = state.writers is None or user in state.service_accounts.get(account, set())
                return (200, {"name": account}) if allowed else (404, None)
        raise Refused(404, f"No handler for {method} /{'/'.join(seg)}")


GATE_USERS = {
    "Basic YWxpY2U6aHVudGVyMg==": "alice",  # alice:hunter2
    "Bearer ci-token-1": "ci-bot",
    "SESSION=abc123": "carol",
}


@contextmanager
def serve(state: Front50State, kind: str = "front50") -> Iterator[StandIn]:
    """Serve state as Front50 (kind "front50"), as Gate in front of it ("gate") or as Fiat over its
    grants ("fiat"), on 127.0.0.1."""
    if kind == "gate":
        handler = type(
            "GateHandler", (_GateHandler,), {"state": state, "credentials": GATE_USERS, "tasks": {}}
        )
    elif kind == "fiat":
        handler = type("FiatHandler", (_FiatHandler,), {"state": state})
    else:
        handler = type("Front50Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandIn(state, f"http://127.0.0.1:{server.server_address[1]}", kind)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


Serve = Callable[[Front50State, str], AbstractContextManager[StandIn]]


@pytest.fixture(name="serve")
def serve_fixture() -> Serve:
    """serve, for tests that start their own stand-in (to choose its credentials)."""
    return serve


@pytest.fixture
def front50_state() -> Front50State:
    return Front50State()


@pytest.fixture
def front50(front50_state: Front50State, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """A Front50 stand-in; the store URL is front50+http://127.0.0.1:PORT (retries 10 ms apart)."""
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_BACKOFF", "0.01")
    with serve(front50_state, "front50") as stand_in:
        yield stand_in


@pytest.fixture
def gate(front50_state: Front50State, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StandIn]:
    """A Gate stand-in over the same state; the store authenticates with a bearer token file (ci-bot)."""
    token = tmp_path / "gate-token"
    token.write_text("ci-token-1\n", encoding="utf-8")
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_TOKEN_FILE", str(token))
    monkeypatch.setenv("PIPELINE_SYNC_HTTP_BACKOFF", "0.01")
    with serve(front50_state, "gate") as stand_in:
        yield stand_in
