"""S3Store against moto: layout, conditional writes, bulk reads and the ETag cache."""

from __future__ import annotations

import json

import pytest
from s3support import BUCKET

from pipeline_sync.errors import StalePlanError, StoreError
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
