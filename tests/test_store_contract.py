"""The store contract: every store is chosen one way (--store, PIPELINE_SYNC_STORE) and behaves alike."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import moto.s3.responses as moto_s3_responses
import pytest
from click.testing import CliRunner
from s3support import BUCKET, object_keys

from pipeline_sync.cli import main
from pipeline_sync.defs.resources import Front50Resource
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.store import Store
from pipeline_sync.store.s3 import S3Store
from pipeline_sync.store.select import open_store

pytest_plugins = ("front50_schema", "front50_standin")

# -- choosing a store ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "environ", "bucket", "root"),
    [
        (None, {"PIPELINE_SYNC_BUCKET": "old", "PIPELINE_SYNC_ROOT": "spin"}, "old", "spin"),
        (None, {"PIPELINE_SYNC_BUCKET": "old"}, "old", "front50"),
        (
            None,
            {"PIPELINE_SYNC_STORE": "s3://env-bucket/env/root", "PIPELINE_SYNC_BUCKET": "old"},
            "env-bucket",
            "env/root",
        ),
        ("s3://flag-bucket", {"PIPELINE_SYNC_STORE": "s3://env-bucket/x"}, "flag-bucket", "front50"),
        ("s3://flag-bucket/", {}, "flag-bucket", "front50"),
        ("s3://flag-bucket/a/b/", {"PIPELINE_SYNC_ROOT": "ignored"}, "flag-bucket", "a/b"),
        ("  ", {"PIPELINE_SYNC_STORE": "s3://env-bucket"}, "env-bucket", "front50"),
        (None, {"PIPELINE_SYNC_STORE": " ", "PIPELINE_SYNC_BUCKET": "old"}, "old", "front50"),
    ],
)
def test_open_store_picks_the_s3_bucket(
    url: str | None, environ: dict[str, str], bucket: str, root: str, aws_env: None
) -> None:
    store = open_store(url, environ)
    assert isinstance(store, S3Store)
    assert (store.settings.bucket, store.settings.root) == (bucket, root)


def test_an_s3_url_keeps_the_other_settings_from_the_environment(aws_env: None, tmp_path: Path) -> None:
    environ = {
        "PIPELINE_SYNC_ENDPOINT_URL": "http://127.0.0.1:9",
        "PIPELINE_SYNC_CACHE_DIR": str(tmp_path),
        "PIPELINE_SYNC_MAX_BODY_BYTES": "1000",
    }
    store = open_store("s3://b/r", environ)
    assert isinstance(store, S3Store)
    assert store.settings.endpoint_url == "http://127.0.0.1:9"
    assert store.settings.cache_dir == tmp_path
    assert store.settings.limits.max_body_bytes == 1000


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://alice:hunter2@host/db",
            "the store URL ftp://***@host/db has ftp://, which is not a store: pass --store or set "
            "PIPELINE_SYNC_STORE to s3://BUCKET/ROOT (ROOT defaults to 'front50'), "
            "postgresql://HOST:PORT/DATABASE (user in the URL or PGUSER), "
            "mysql://HOST:PORT/DATABASE (user in the URL, password in it, MYSQL_PWD or ~/.my.cnf), "
            "front50+http(s)://HOST:PORT or gate+http(s)://HOST:PORT (auth from PIPELINE_SYNC_HTTP_*).",
        ),
        (
            "bucket/front50",
            "the store URL bucket/front50 has no scheme, which is not a store: pass --store or set "
            "PIPELINE_SYNC_STORE to s3://BUCKET/ROOT (ROOT defaults to 'front50'), "
            "postgresql://HOST:PORT/DATABASE (user in the URL or PGUSER), "
            "mysql://HOST:PORT/DATABASE (user in the URL, password in it, MYSQL_PWD or ~/.my.cnf), "
            "front50+http(s)://HOST:PORT or gate+http(s)://HOST:PORT (auth from PIPELINE_SYNC_HTTP_*).",
        ),
        (
            "s3://AKIA:hunter2@bucket/front50",
            "the store URL s3://***@bucket/front50 holds credentials: an s3:// URL names only the bucket "
            "and root; give AWS credentials the usual way (AWS_PROFILE, AWS_ACCESS_KEY_ID, an instance role).",
        ),
        (
            "mysql://front50:hunter2@db:3306/",
            "the store URL mysql://***@db:3306/ must name one database and nothing after it: "
            "write it as mysql://HOST:PORT/DATABASE with the user in the URL.",
        ),
        (
            "mysql://front50:hunter2@db:3306/front50?ssl=1&password=hunter2",
            "the store URL mysql://***@db:3306/front50?ssl=1&password=*** must name one database and "
            "nothing after it: write it as mysql://HOST:PORT/DATABASE with the user in the URL.",
        ),
        (
            "mysql://front50:hunter2@db:3306/front50/more",
            "the store URL mysql://***@db:3306/front50/more must name one database and nothing after it: "
            "write it as mysql://HOST:PORT/DATABASE with the user in the URL.",
        ),
        ("s3:///front50", "the store URL s3:///front50 names no bucket: write it as s3://BUCKET/ROOT."),
        (
            "s3://bucket/front50?password=hunter2",
            "the store URL s3://bucket/front50?password=*** has a query or fragment, which an s3:// store "
            "does not take: write it as s3://BUCKET/ROOT.",
        ),
    ],
)
def test_a_store_url_that_names_no_store_is_refused_without_its_secrets(url: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url, {})
    assert str(caught.value) == message
    assert "hunter2" not in str(caught.value)


def test_nothing_set_still_asks_for_the_bucket() -> None:
    with pytest.raises(StoreError, match=r"^PIPELINE_SYNC_BUCKET is not set: export the name"):
        open_store(None, {})


def cli(project: Path, *args: str) -> list[str]:
    options = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates")]
    result = CliRunner().invoke(main, [*options, *args])
    return [str(result.exit_code), *result.output.splitlines()]


def test_the_cli_store_option_beats_the_environment(
    project: Path, store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_SYNC_STORE", "s3://no-such-bucket")
    monkeypatch.setenv("PIPELINE_SYNC_BUCKET", "no-such-bucket-either")
    out = cli(project, "--store", f"s3://{BUCKET}/front50", "plan", "--out", str(project / "plan.json"))
    assert out[0] == "2", out
    assert object_keys(store) == []  # a plan writes nothing
    refused = cli(project, "plan")
    assert refused[0] == "1"
    assert "no-such-bucket" in "\n".join(refused) and "no-such-bucket-either" not in "\n".join(refused)


def test_the_cli_never_prints_store_credentials(project: Path) -> None:
    out = cli(project, "--store", "ftp://alice:hunter2@host/db", "plan")
    assert out[0] == "1"
    assert out[1] == (
        "error: the store URL ftp://***@host/db has ftp://, which is not a store: pass --store or set "
        "PIPELINE_SYNC_STORE to s3://BUCKET/ROOT (ROOT defaults to 'front50'), "
        "postgresql://HOST:PORT/DATABASE (user in the URL or PGUSER), "
        "mysql://HOST:PORT/DATABASE (user in the URL, password in it, MYSQL_PWD or ~/.my.cnf), "
        "front50+http(s)://HOST:PORT or gate+http(s)://HOST:PORT (auth from PIPELINE_SYNC_HTTP_*)."
    )
    assert "hunter2" not in "\n".join(out)


@pytest.mark.parametrize(
    ("fields", "environ", "bucket", "root"),
    [
        ({"store_url": "s3://url-bucket/r"}, {"PIPELINE_SYNC_STORE": "s3://env-bucket"}, "url-bucket", "r"),
        ({"bucket": "field-bucket"}, {"PIPELINE_SYNC_STORE": "s3://env-bucket"}, "field-bucket", "front50"),
        ({}, {"PIPELINE_SYNC_STORE": "s3://env-bucket/e", "PIPELINE_SYNC_BUCKET": "old"}, "env-bucket", "e"),
        ({"root": "rr"}, {"PIPELINE_SYNC_BUCKET": "old"}, "old", "rr"),
    ],
)
def test_the_dagster_resource_chooses_the_store_as_the_cli_does(
    fields: dict[str, str],
    environ: dict[str, str],
    bucket: str,
    root: str,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("PIPELINE_SYNC_STORE", "PIPELINE_SYNC_BUCKET", "PIPELINE_SYNC_ROOT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    store = Front50Resource(**fields).store()
    assert isinstance(store, S3Store)
    assert (store.settings.bucket, store.settings.root) == (bucket, root)


# -- the contract every store keeps ------------------------------------------------------------

# What Front50's API sets on every save (Pipeline: updateTs, lastModifiedBy from X-SPINNAKER-USER)
# and fills in when a body leaves it out (triggers [], schema "1"): see tests/front50_standin.py.
API_SERVER_FIELDS = ("updateTs", "lastModifiedBy")
API_DEFAULTS: dict[str, Any] = {"triggers": [], "schema": "1"}


@dataclass(frozen=True)
class StoreFactory:
    """Makes stores over one fresh, empty Front50 (each call: a new client); api: through Front50's
    REST API, which fills in defaults and server fields and has no compare-and-swap."""

    make: Callable[[], Store]
    api: bool = False

    def __call__(self) -> Store:
        return self.make()

    def held(self, document: dict[str, Any] | None) -> dict[str, Any] | None:
        """A stored document without the fields the server sets on each save."""
        if document is None or not self.api:
            return document
        return {k: v for k, v in document.items() if k not in API_SERVER_FIELDS}

    def expected(self, body: bytes) -> dict[str, Any]:
        """What the store holds after writing body: exactly it, or with Front50's defaults added."""
        document: dict[str, Any] = json.loads(body)
        return {**API_DEFAULTS, **document} if self.api else document


def atomic_conditional_puts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto check a PUT's condition (If-Match, If-None-Match) and store the object as one
    step, as S3 does: moto checks, then stores, without a lock, so racing threads could both pass
    a check S3 lets exactly one of them pass (a racing-writes test failed 3 times in 15 on a slow
    machine). Only PUTs are serialised; reads and the store's own steps still interleave."""
    lock = threading.Lock()
    put = moto_s3_responses.S3Response.put_object

    def one_at_a_time(self: Any) -> Any:
        with lock:
            return put(self)

    monkeypatch.setattr(moto_s3_responses.S3Response, "put_object", one_at_a_time)


@pytest.fixture(params=["s3", "postgresql", "mysql", "front50+http", "gate+http"])
def stores(request: pytest.FixtureRequest) -> StoreFactory:
    """A StoreFactory over one fresh, empty Front50."""
    if request.param == "s3":
        s3: S3Store = request.getfixturevalue("store")
        s3.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        atomic_conditional_puts(request.getfixturevalue("monkeypatch"))
        return StoreFactory(lambda: S3Store(s3.settings, client=s3.client))
    if request.param.endswith("+http"):
        stand_in = request.getfixturevalue(request.param.split("+")[0])
        return StoreFactory(lambda: open_store(stand_in.store_url), api=True)
    url: str = request.getfixturevalue(f"front50_{'postgres' if request.param == 'postgresql' else 'mysql'}")
    return StoreFactory(lambda: open_store(url, {}))


def pipeline(name: str = "deploy", **extra: Any) -> bytes:
    document = {"id": "Pipe-1", "application": "app", "name": name, "stages": [], **extra}
    return json.dumps(document, sort_keys=True).encode()


def document_of(stores: StoreFactory, pipeline_id: str = "pipe-1") -> dict[str, Any] | None:
    """What a new client of the store reads of the pipeline, without per-save server fields."""
    obj = stores().read_pipeline(pipeline_id)
    return stores.held(obj.document) if obj is not None else None


def test_a_new_store_is_empty(stores: StoreFactory) -> None:
    store = stores()
    assert store.read_live() == {}
    assert store.read_pipeline("pipe-1") is None
    assert store.repair_change_signals() == []


def test_create_only_while_absent(stores: StoreFactory) -> None:
    store = stores()
    written = store.put_pipeline("Pipe-1", pipeline("first"), if_match=None)
    live = store.read_live()
    assert list(live) == ["pipe-1"]
    assert live["pipe-1"].etag == written.etag
    assert stores.held(live["pipe-1"].document) == stores.expected(pipeline("first"))
    with pytest.raises(StalePlanError, match=r"^stale plan: .*nothing was written"):
        store.put_pipeline("pipe-1", pipeline("second"), if_match=None)
    assert document_of(stores) == stores.expected(pipeline("first"))


def test_update_only_at_the_token_the_plan_saw(stores: StoreFactory) -> None:
    store = stores()
    first = store.put_pipeline("pipe-1", pipeline("first"), if_match=None)
    second = store.put_pipeline("pipe-1", pipeline("second"), if_match=first.etag)
    assert second.etag != first.etag
    assert stores().read_live()["pipe-1"].etag == second.etag
    with pytest.raises(StalePlanError, match=r"^stale plan: .*nothing was written"):
        store.put_pipeline("pipe-1", pipeline("third"), if_match=first.etag)
    assert document_of(stores) == stores.expected(pipeline("second"))


def test_a_retried_write_whose_answer_was_lost_is_not_stale(stores: StoreFactory) -> None:
    store = stores()
    first = store.put_pipeline("pipe-1", pipeline("first"), if_match=None)
    second = store.put_pipeline("pipe-1", pipeline("second"), if_match=first.etag)
    again = stores().put_pipeline("pipe-1", pipeline("second"), if_match=first.etag)
    assert again.etag == second.etag
    assert document_of(stores) == stores.expected(pipeline("second"))


def test_delete_only_at_the_token_the_plan_saw(stores: StoreFactory) -> None:
    store = stores()
    first = store.put_pipeline("pipe-1", pipeline("first"), if_match=None)
    second = store.put_pipeline("pipe-1", pipeline("second"), if_match=first.etag)
    assert first.etag is not None and second.etag is not None
    with pytest.raises(StalePlanError, match=r"^stale plan: .*nothing was written"):
        store.delete_pipeline("pipe-1", if_match=first.etag)
    assert document_of(stores) == stores.expected(pipeline("second"))
    store.delete_pipeline("pipe-1", if_match=second.etag)
    assert stores().read_live() == {}
    assert stores().read_pipeline("pipe-1") is None
    store.delete_pipeline("pipe-1", if_match=second.etag)  # a retry: already gone, same end state
    recreated = store.put_pipeline("pipe-1", pipeline("again"), if_match=None)
    assert stores().read_live()["pipe-1"].etag == recreated.etag


@pytest.mark.parametrize("planned", ["absent", "present"])
def test_racing_writes_make_exactly_one_write(stores: StoreFactory, planned: str) -> None:
    token = (
        stores().put_pipeline("pipe-1", pipeline("base"), if_match=None).etag
        if planned == "present"
        else None
    )
    racers = [stores() for _ in range(4)]
    start = threading.Barrier(len(racers))
    outcomes: dict[int, str] = {}

    def race(index: int) -> None:
        start.wait()
        try:
            racers[index].put_pipeline("pipe-1", pipeline(f"racer-{index}"), if_match=token)
            outcomes[index] = "written"
        except StalePlanError:
            outcomes[index] = "stale"
        except StoreError:  # an API store: saved, then overwritten by a racer (docs/http-store.md)
            outcomes[index] = "overwritten"

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == len(racers)
    if not stores.api:
        assert sorted(outcomes.values()) == ["stale", "stale", "stale", "written"]
        [winner] = [i for i, outcome in outcomes.items() if outcome == "written"]
        assert document_of(stores) == stores.expected(pipeline(f"racer-{winner}"))
        return
    # No compare-and-swap: racers that pass their re-read together all save and the last save
    # wins; the survivor is one of them. Over an existing pipeline never in silence: at most one
    # reports "written", and a save that overwrote another is reported from Front50's history.
    # (Two creates of one id can both report "written": history cannot tell a racing create from
    # an earlier, deleted incarnation. docs/http-store.md.)
    saved = [i for i, outcome in outcomes.items() if outcome in {"written", "overwritten"}]
    assert saved
    if planned == "present":
        assert list(outcomes.values()).count("written") <= 1
    assert document_of(stores) in [stores.expected(pipeline(f"racer-{i}")) for i in saved]


def test_ensure_application_creates_it_once(stores: StoreFactory) -> None:
    store = stores()
    assert store.ensure_application("Checkout", "team@example.com") is True
    assert store.ensure_application("checkout", None) is False
    assert stores().ensure_application("CHECKOUT", None) is False


def test_history_keeps_every_write(stores: StoreFactory) -> None:
    store = stores()
    assert store.keeps_history() is True
    first = store.put_pipeline("pipe-1", pipeline("first"), if_match=None)
    second = store.put_pipeline("pipe-1", pipeline("second"), if_match=first.etag)
    reader = stores()
    versions = reader.pipeline_versions("Pipe-1")
    assert [v.etag for v in versions] == [second.etag, first.etag]
    assert [v.is_latest for v in versions] == [True, False]
    old = reader.read_pipeline_version("pipe-1", versions[1].version_id)
    assert (old.etag, stores.held(old.document)) == (first.etag, stores.expected(pipeline("first")))
    assert reader.pipeline_versions("pipe-2") == []
