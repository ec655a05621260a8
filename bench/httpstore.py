"""Front50's and Gate's REST API for the bench: the stand-in serving the synthetic fleet, counted by route.

The stand-in is tests/front50_standin.py, written from Front50's and Gate's controllers (each
behaviour names the class it copies); `pipeline-sync --store front50+http://...` and
`gate+http://...` talk to it exactly as to Spinnaker. It runs in the bench's own process, one
threaded HTTP server per API on a free 127.0.0.1 port, both over one shared state. Its pipelines
are the documents of the S3 baseline (bench/synth.py) as Front50 would hold them: by the id in
the body, with one history entry each; a Deck edit (the drifted scenario) is a save that replaces
the pipeline and adds a history entry, as Front50's `PipelineController.save` does.

What its figures mean. Requests are counted at the stand-in, by route (`GET /pipelines`,
`GET /pipelines/{id}/get`, ...), so they are the requests a real Front50 or Gate would serve
for the same plan. The wall time is the whole `pipeline-sync plan` process: Front50's answers
really cross a loopback socket, and the client really parses each listing of every pipeline's
full body (the HTTP stores have no ETag shortcut), so the client's share of the cost is real.
What it does not model: network latency and bandwidth between pipeline-sync and Front50 (loopback
is sub-millisecond); Front50's own CPU and memory (a real Front50 answers `GET /pipelines` from its
in-memory cache of every pipeline, kept current by a background refresh from S3 or SQL, and
serialises it with Jackson in a JVM; the stand-in dumps Python dicts with `json`, in the bench's
process, on the same two cores as the client, and returns each document exactly as seeded, with no
field Front50's `Pipeline` model would add or reorder); Gate's hop to Front50 (the Gate stand-in
answers from the same state itself); Fiat's READ filtering; JVM warm-up and GC pauses. So the API
stores' wall time is the client's real cost plus a Python loopback server's; a Front50 across a
network adds the latency of each request and the transfer of each listing (`listing_bytes`, every
pipeline's body: some MB per thousand pipelines). Their request counts are exact.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import synth
from pipeline_sync.store.front50 import application_document
from pipeline_sync.store.s3 import PIPELINE_FILE

STANDIN_FILE = Path(__file__).resolve().parent.parent / "tests" / "front50_standin.py"
STANDIN_MODULE = "front50_standin"
KINDS = ("front50", "gate")
GATE_TOKEN = "ci-token-1"  # one of the stand-in's GATE_USERS (ci-bot)
SEED_STAMP_MS = 1_700_000_000_000  # an application's createTs/updateTs
_PIPELINE_KEY = re.compile(rf"^{synth.ROOT}/pipelines/([^/]+)/{re.escape(PIPELINE_FILE)}$")

# The stand-in's routes, each as (method, path pattern, name): names as in docs/http-store.md.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("GET", r"^/pipelines$", "GET /pipelines"),
        ("GET", r"^/pipelines/[^/]+/get$", "GET /pipelines/{id}/get"),
        ("GET", r"^/pipelines/[^/]+/history$", "GET /pipelines/{id}/history"),
        ("GET", r"^/pipelines/[^/]+/name/[^/]+$", "GET /pipelines/{app}/name/{name}"),
        ("GET", r"^/pipelines/[^/]+$", "GET /pipelines/{app}"),
        ("POST", r"^/pipelines$", "POST /pipelines"),
        ("PUT", r"^/pipelines/[^/]+$", "PUT /pipelines/{id}"),
        ("DELETE", r"^/pipelines/[^/]+/[^/]+$", "DELETE /pipelines/{app}/{name}"),
        ("GET", r"^/v2/applications/[^/]+$", "GET /v2/applications/{app}"),
        ("POST", r"^/v2/applications$", "POST /v2/applications"),
        ("GET", r"^/auth/user$", "GET /auth/user"),
        ("GET", r"^/pipelineConfigs$", "GET /pipelineConfigs"),
        ("GET", r"^/pipelineConfigs/[^/]+/history$", "GET /pipelineConfigs/{id}/history"),
        (
            "GET",
            r"^/applications/[^/]+/pipelineConfigs/[^/]+$",
            "GET /applications/{app}/pipelineConfigs/{id}",
        ),
        ("GET", r"^/applications/[^/]+$", "GET /applications/{app}"),
        ("POST", r"^/applications/[^/]+/tasks$", "POST /applications/{app}/tasks"),
        ("GET", r"^/tasks/[^/]+$", "GET /tasks/{id}"),
    )
)


def standin() -> ModuleType:
    """tests/front50_standin.py as a module (the one pytest imported, when it did). It imports
    pytest for its fixtures: the bench runs from the dev extra, which has pytest beside moto."""
    module = sys.modules.get(STANDIN_MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(STANDIN_MODULE, STANDIN_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[STANDIN_MODULE] = module  # dataclasses look their module up while it loads
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[STANDIN_MODULE]
            raise
    return module


def route_of(method: str, path: str) -> str:
    """The route a request took, its ids and names replaced by placeholders."""
    for route_method, pattern, name in _ROUTES:
        if method == route_method and pattern.match(path):
            return name
    return f"{method} (no route) {path}"


def pipeline_documents(bodies: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    """{id as in the body: document} for every pipeline object of an S3 baseline (the change
    marker, and anything else that is not a pipeline, left out)."""
    documents = {}
    for key, raw in sorted(bodies.items()):
        if _PIPELINE_KEY.match(key) is None:
            continue
        document = json.loads(raw)
        documents[str(document["id"])] = document
    return documents


def listing_bytes(state: Any) -> int:
    """The size of one `GET /pipelines` answer over the state's pipelines, as the stand-in sends it."""
    with state.lock:
        return len(json.dumps(list(state.pipelines.values())).encode())


def seed(state: Any, bodies: Mapping[str, bytes]) -> int:
    """The stand-in's state (a Front50State) holding the baseline's pipelines, one history entry
    each, and their applications; how many pipelines."""
    documents = pipeline_documents(bodies)
    with state.lock:
        for pipeline_id, document in documents.items():
            state.pipelines[pipeline_id] = document
            state.history[pipeline_id.lower()] = [json.loads(json.dumps(document))]
        for name in sorted({str(d["application"]) for d in documents.values()}):
            application = application_document(name, None)
            application["createTs"] = application["updateTs"] = str(SEED_STAMP_MS)
            state.applications[name.lower()] = application
    return len(documents)


def put_bodies(state: Any, bodies: Mapping[str, bytes]) -> None:
    """Save some pipelines (a Deck edit, or putting them back) as Front50's save does: the
    pipeline replaced, a history entry added in front. The bodies are kept byte for byte as the
    S3 column has them, so both stores hold the same documents."""
    with state.lock:
        for pipeline_id, document in pipeline_documents(bodies).items():
            state.pipelines[pipeline_id] = document
            state.history.setdefault(pipeline_id.lower(), []).insert(0, json.loads(json.dumps(document)))


@dataclass
class Served:
    """The running stand-in: its state, the URL of each API, and the requests counted by route."""

    state: Any  # front50_standin.Front50State
    urls: dict[str, str]  # kind -> http://127.0.0.1:PORT
    token_file: Path

    def store_url(self, kind: str) -> str:
        return f"{kind}+{self.urls[kind]}"

    def client_env(self, kind: str) -> dict[str, str]:
        """The environment a pipeline-sync child needs to reach this API (Gate: a bearer token)."""
        env = {"PIPELINE_SYNC_STORE": self.store_url(kind)}
        if kind == "gate":
            env["PIPELINE_SYNC_HTTP_TOKEN_FILE"] = str(self.token_file)
        return env

    def reset(self) -> None:
        with self.state.lock:
            self.state.requests.clear()

    def counts(self) -> dict[str, int]:
        """Requests served since the last reset, by route."""
        with self.state.lock:
            recorded = list(self.state.requests)
        return dict(Counter(route_of(r.method, r.path) for r in recorded))


@contextmanager
def serving(bodies: Mapping[str, bytes], work: Path) -> Iterator[Served]:
    """Front50 and Gate stand-ins over one state seeded with bodies (an S3 baseline), each on a
    free loopback port, until the block ends."""
    module = standin()
    state = module.Front50State()
    seed(state, bodies)
    work.mkdir(parents=True, exist_ok=True)
    token_file = work / "gate-token"
    token_file.write_text(GATE_TOKEN + "\n", encoding="utf-8")
    with ExitStack() as stack:
        urls = {kind: stack.enter_context(module.serve(state, kind)).url for kind in KINDS}
        yield Served(state, urls, token_file)
