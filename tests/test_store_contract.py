"""The store contract: every store is chosen one way (--store, PIPELINE_SYNC_STORE) and behaves alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from s3support import BUCKET, object_keys

from pipeline_sync.cli import main
from pipeline_sync.defs.resources import Front50Resource
from pipeline_sync.errors import StoreError
from pipeline_sync.store.s3 import S3Store
from pipeline_sync.store.select import open_store

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
            "postgresql://USER@HOST:PORT/DATABASE or mysql://USER@HOST:PORT/DATABASE.",
        ),
        (
            "bucket/front50",
            "the store URL bucket/front50 has no scheme, which is not a store: pass --store or set "
            "PIPELINE_SYNC_STORE to s3://BUCKET/ROOT (ROOT defaults to 'front50'), "
            "postgresql://USER@HOST:PORT/DATABASE or mysql://USER@HOST:PORT/DATABASE.",
        ),
        (
            "s3://AKIA:hunter2@bucket/front50",
            "the store URL s3://***@bucket/front50 holds credentials: an s3:// URL names only the bucket "
            "and root; give AWS credentials the usual way (AWS_PROFILE, AWS_ACCESS_KEY_ID, an instance role).",
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
        "postgresql://USER@HOST:PORT/DATABASE or mysql://USER@HOST:PORT/DATABASE."
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
