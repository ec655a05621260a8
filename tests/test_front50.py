"""S3Store against moto: layout, conditional writes, bulk reads, the ETag cache, markers, encryption."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, build_project
from s3support import BUCKET, workspace_of

from pipeline_sync import engine
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.store import front50 as front50_facts
from pipeline_sync.store.s3 import RequestCounter, S3Settings, S3Store


def test_keys_follow_front50_layout(store: S3Store) -> None:
    assert store.pipeline_key("ABC-1") == "front50/pipelines/abc-1/pipeline-metadata.json"
    assert store.application_key("Checkout") == "front50/applications/checkout/application-metadata.json"
    assert store.marker_key("pipelines") == "front50/pipelines/last-modified.json"


def test_create_then_conditional_update(store: S3Store) -> None:
    created = store.put_pipeline("p1", b'{"id": "p1"}', if_match=None)
    assert created.etag
    with pytest.raises(StalePlanError, match="stale plan"):
        store.put_pipeline("p1", b'{"id": "p1", "x": 1}', if_match=None)
    with pytest.raises(StalePlanError, match="nothing was written"):
        store.put_pipeline("p1", b'{"id": "p1", "x": 2}', if_match='"not-the-etag"')
    updated = store.put_pipeline("p1", b'{"id": "p1", "x": 3}', if_match=created.etag)
    live = store.read_pipeline("p1")
    assert live is not None and live.document == {"id": "p1", "x": 3} and live.etag == updated.etag


def test_marker_is_a_json_number_of_epoch_ms(store: S3Store) -> None:
    store.put_pipeline("p1", b'{"id": "p1"}', if_match=None)
    body = store.client.get_object(Bucket=BUCKET, Key="front50/pipelines/last-modified.json")["Body"].read()
    marker = json.loads(body)
    assert list(marker) == ["lastModified"]
    assert isinstance(marker["lastModified"], int) and marker["lastModified"] > 1_600_000_000_000


def test_conditional_delete(store: S3Store) -> None:
    etag = store.put_pipeline("p1", b'{"id": "p1"}', if_match=None).etag
    with pytest.raises(StalePlanError):
        store.delete_pipeline("p1", if_match='"other"')
    assert etag is not None
    store.delete_pipeline("p1", if_match=etag)
    assert store.read_pipeline("p1") is None


def test_application_created_once_with_front50_shape(store: S3Store) -> None:
    assert store.ensure_application("checkout", "team@example.com") is True
    assert store.ensure_application("checkout", "team@example.com") is False
    body = store.client.get_object(
        Bucket=BUCKET, Key="front50/applications/checkout/application-metadata.json"
    )["Body"].read()
    app = json.loads(body)
    assert app["name"] == "CHECKOUT" and app["email"] == "team@example.com"
    assert app["updateTs"].isdigit() and app["createTs"].isdigit()
    marker = json.loads(
        store.client.get_object(Bucket=BUCKET, Key="front50/applications/last-modified.json")["Body"].read()
    )
    assert isinstance(marker["lastModified"], int)
    fresh = S3Store(store.settings, client=store.client)
    assert fresh.list_applications() == {"checkout"}


def test_read_live_survives_bad_objects(store: S3Store) -> None:
    store.put_pipeline("good", b'{"id": "good", "name": "n", "application": "a"}', if_match=None)
    store.put_pipeline("notjson", b"{oops", if_match=None)
    store.put_pipeline("noid", b'{"name": "x"}', if_match=None)
    store.client.put_object(Bucket=BUCKET, Key="front50/pipelines/stray.txt", Body=b"x")
    live = store.read_live()
    assert sorted(live) == ["good", "noid", "notjson"]
    assert live["good"].problem is None
    assert "not valid JSON" in (live["notjson"].problem or "")
    assert live["noid"].problem == "has no id"


def test_cache_avoids_downloading_unchanged_objects(store: S3Store) -> None:
    for i in range(30):
        store.put_pipeline(f"p{i}", json.dumps({"id": f"p{i}"}).encode(), if_match=None)
    counter = RequestCounter()
    store.client.meta.events.register("before-call.s3", counter)
    first = store.read_live()
    assert counter.counts.get("GetObject") == 30
    counter.counts.clear()
    again = store.read_live()
    assert counter.counts == {"ListObjectsV2": 1}
    assert {k: v.document for k, v in again.items()} == {k: v.document for k, v in first.items()}
    store.put_pipeline("p3", b'{"id": "p3", "changed": true}', if_match=first["p3"].etag)
    counter.counts.clear()
    third = store.read_live()
    assert counter.counts == {"ListObjectsV2": 1, "GetObject": 1}
    assert third["p3"].document == {"id": "p3", "changed": True}


def test_listing_is_paginated(store: S3Store) -> None:
    for i in range(1005):
        store.client.put_object(
            Bucket=BUCKET, Key=f"front50/pipelines/p{i}/pipeline-metadata.json", Body=b"{}"
        )
    assert len(store.list_pipeline_etags()) == 1005


def test_settings_from_env_requires_bucket() -> None:
    with pytest.raises(StoreError, match="PIPELINE_SYNC_BUCKET"):
        S3Settings.from_env({})
    settings = S3Settings.from_env({"PIPELINE_SYNC_BUCKET": "b", "PIPELINE_SYNC_ROOT": "custom"})
    assert (settings.bucket, settings.root, settings.endpoint_url) == ("b", "custom", None)


def test_client_uses_standard_retries_and_timeouts(store: S3Store) -> None:
    from pipeline_sync.store.s3 import make_s3_client

    client = make_s3_client(S3Settings(bucket="b"))
    config = client.meta.config
    assert config.retries["mode"] == "standard" and config.retries["total_max_attempts"] == 5
    assert config.connect_timeout == 5 and config.read_timeout == 30


def test_clients_come_from_one_session_that_keeps_timestamps_as_text(store: S3Store) -> None:
    from pipeline_sync.store.s3 import make_s3_client, s3_session

    store.put_pipeline("p1", b'{"id": "p1"}', if_match=None)
    counter = RequestCounter()
    s3_session().events.register("before-call.s3", counter)
    try:
        client = make_s3_client(S3Settings(bucket=BUCKET))
        listed = client.list_objects_v2(Bucket=BUCKET)["Contents"]
        S3Store(store.settings, client=client).list_pipeline_etags()
    finally:
        s3_session().events.unregister("before-call.s3", counter)
    assert counter.counts == {"ListObjectsV2": 2}
    stamp = listed[0]["LastModified"]
    assert isinstance(stamp, str) and stamp.endswith("Z") and stamp[:2] == "20"


# -- change markers: past the last value seen ---------------------------------------------------

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("last_seen", "newest_object", "stamp"),
    [
        (None, None, NOW),
        (NOW - 1, None, NOW),
        (NOW, None, NOW + 1),  # Front50 reloads only on a strictly newer value
        (NOW + 3_600_000, None, NOW + 3_600_001),  # this clock is an hour behind Front50's
        (None, NOW + 5, NOW + 6),
        (NOW + 9, NOW + 5, NOW + 10),
    ],
)
def test_the_change_stamp_is_past_the_last_value_seen(
    monkeypatch: pytest.MonkeyPatch, last_seen: int | None, newest_object: int | None, stamp: int
) -> None:
    monkeypatch.setattr(front50_facts, "now_ms", lambda: NOW)
    assert front50_facts.next_change_stamp(last_seen, newest_object_ms=newest_object) == stamp


def test_a_write_bumps_the_marker_to_exactly_last_seen_plus_one(store: S3Store) -> None:
    ahead = int(time.time() * 1000) + 3_600_000
    marker_key = "front50/pipelines/last-modified.json"
    store.client.put_object(Bucket=BUCKET, Key=marker_key, Body=json.dumps({"lastModified": ahead}))
    store.repair_change_signals()  # what engine.apply does first: reads the marker
    store.put_pipeline("p1", b'{"id": "p1"}', if_match=None)
    read = lambda: json.loads(store.client.get_object(Bucket=BUCKET, Key=marker_key)["Body"].read())  # noqa: E731
    assert read() == {"lastModified": ahead + 1}
    store.put_pipeline("p2", b'{"id": "p2"}', if_match=None)
    assert read() == {"lastModified": ahead + 2}


# -- server-side encryption ----------------------------------------------------------------------

KMS_KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("env", "sse", "key_id"),
    [
        ({}, None, None),
        ({"PIPELINE_SYNC_SSE": ""}, None, None),
        ({"PIPELINE_SYNC_SSE": "AES256"}, "AES256", None),
        ({"PIPELINE_SYNC_SSE": "aws:kms"}, "aws:kms", None),
        ({"PIPELINE_SYNC_SSE": "AWSKMS"}, "aws:kms", None),  # Front50's spelling
        ({"PIPELINE_SYNC_SSE": "aws:kms", "PIPELINE_SYNC_SSE_KMS_KEY_ID": KMS_KEY}, "aws:kms", KMS_KEY),
    ],
)
def test_encryption_settings_from_env(env: dict[str, str], sse: str | None, key_id: str | None) -> None:
    settings = S3Settings.from_env({"PIPELINE_SYNC_BUCKET": "b", **env})
    assert (settings.sse, settings.sse_kms_key_id) == (sse, key_id)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PIPELINE_SYNC_SSE": "aws:kms:dsse"},
            "server-side encryption 'aws:kms:dsse' is not one S3 knows: use 'AES256' (SSE-S3) or "
            "'aws:kms' (SSE-KMS) in PIPELINE_SYNC_SSE, or leave it unset",
        ),
        (
            {"PIPELINE_SYNC_SSE_KMS_KEY_ID": KMS_KEY},
            "PIPELINE_SYNC_SSE_KMS_KEY_ID names a KMS key, which only SSE-KMS uses: "
            "set PIPELINE_SYNC_SSE=aws:kms, or unset PIPELINE_SYNC_SSE_KMS_KEY_ID",
        ),
        (
            {"PIPELINE_SYNC_SSE": "AES256", "PIPELINE_SYNC_SSE_KMS_KEY_ID": KMS_KEY},
            "PIPELINE_SYNC_SSE_KMS_KEY_ID names a KMS key, which only SSE-KMS uses: "
            "set PIPELINE_SYNC_SSE=aws:kms, or unset PIPELINE_SYNC_SSE_KMS_KEY_ID",
        ),
    ],
)
def test_encryption_settings_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(StoreError) as caught:
        S3Settings.from_env({"PIPELINE_SYNC_BUCKET": "b", **env})
    assert str(caught.value) == message


def refuse_unencrypted_puts(client: Any) -> None:
    """What a bucket policy denying s3:PutObject without x-amz-server-side-encryption does."""

    def check(params: dict[str, Any], **_: Any) -> None:
        if "x-amz-server-side-encryption" not in params["headers"]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")

    client.meta.events.register("before-call.s3.PutObject", check)


def every_object_encryption(store: S3Store) -> dict[str, tuple[str | None, str | None]]:
    keys = store.client.list_objects_v2(Bucket=BUCKET)["Contents"]
    heads = {o["Key"]: store.client.head_object(Bucket=BUCKET, Key=o["Key"]) for o in keys}
    return {k: (h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")) for k, h in heads.items()}


@pytest.mark.parametrize(("sse", "key_id"), [("AES256", None), ("aws:kms", None), ("aws:kms", KMS_KEY)])
def test_every_put_is_encrypted_for_a_bucket_that_requires_it(
    tmp_path: Path, store: S3Store, sse: str, key_id: str | None
) -> None:
    refuse_unencrypted_puts(store.client)
    encrypted = S3Store(replace(store.settings, sse=sse, sse_kms_key_id=key_id), client=store.client)
    project = build_project(
        tmp_path / "p", defaults=DEPLOY_DEFAULTS, templates={"deploy": DEPLOY_TEMPLATE}
    ).root
    workspace = workspace_of(project)
    plan = engine.plan(workspace, encrypted)
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    results = engine.apply(workspace, encrypted, approved, approver="alice")
    pid = pipeline_id_for("svc/dev/deploy")
    written = (
        f"svc/dev/deploy: create -> front50/pipelines/{pid}/pipeline-metadata.json (created application svc)"
    )
    assert [(r.outcome, r.message) for r in results] == [("applied", written)]  # markers bumped too
    update = encrypted.read_pipeline(pid)
    assert update is not None and update.document is not None
    encrypted.put_pipeline(update.pipeline_id, b'{"id": "x"}', if_match=update.etag)
    encrypted.repair_change_signals()
    found = every_object_encryption(store)
    assert set(found) == {
        "front50/applications/svc/application-metadata.json",
        "front50/applications/last-modified.json",
        f"front50/pipelines/{pid}/pipeline-metadata.json",
        "front50/pipelines/last-modified.json",
        encrypted.summary_key,  # pipeline-sync's fleet summary: encrypted like every other put
    }
    assert set(found.values()) == {(sse, key_id)}


def test_without_encryption_such_a_bucket_refuses_the_write(store: S3Store) -> None:
    refuse_unencrypted_puts(store.client)
    with pytest.raises(StoreError) as caught:
        store.put_pipeline("p1", b'{"id": "p1"}', if_match=None)
    assert str(caught.value) == (
        "cannot write s3://front50-test/front50/pipelines/p1/pipeline-metadata.json: An error occurred "
        "(AccessDenied) when calling the PutObject operation: Access Denied"
    )
