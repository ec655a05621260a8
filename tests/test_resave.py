"""Front50's own normalisation is not drift: re-saves, kept index and lock, markers written before."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import DEPLOY_DEFAULTS, build_project
from s3support import BUCKET, workspace_of

from pipeline_sync import engine
from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.engine import Selection
from pipeline_sync.front50_model import PIPELINE_FIELDS
from pipeline_sync.history import person_edited
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.plan import PlanEntry, plan_digest
from pipeline_sync.provenance import (
    MARKER_FIELD,
    as_written,
    content_digest,
    kept_from,
    legacy_content_digest,
    managed_document,
    normalise,
)
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Store

KEY = "svc/dev/deploy"
PID = pipeline_id_for(KEY)
STAGES = """\
stages:
  - refId: "deploy"
    type: deployManifest
    account: "k8s-{{ stack }}"
"""
# No triggers and no schema: a Front50 save adds both.
PLAIN = 'application: "{{ app_name }}"\nname: "deploy-{{ stack }}"\ndescription: "{{ description }}"\n'
PLAIN += "limitConcurrent: true\n" + STAGES
# Values of typed fields that Jackson converts on read, nulls Front50 leaves out, a key it drops.
TYPED = (
    PLAIN
    + """\
keepWaitingPipelines: "TRUE"
maxConcurrentExecutions: "3"
stageCounter: 2.0
email: 42
roles: [7, true]
spelEvaluator: null
schema: null
createdAt: 1712345678901
"""
)
# What Front50 holds for TYPED's converted fields, spelled out (jackson-databind StdDeserializer).
TYPED_HELD = {
    "keepWaitingPipelines": True,
    "maxConcurrentExecutions": 3,
    "stageCounter": 2,
    "email": "42",
    "roles": ["7", "true"],
}
# Front50 replaces cron trigger ids on every API save of a pipeline that asks for it.
CRON = (
    PLAIN
    + """\
regenerateCronTriggerIds: true
triggers:
  - {type: cron, cronExpression: "0 0 12 * * ?", enabled: true}
  - {type: git, source: github, project: shop, slug: svc, branch: main, enabled: true}
"""
)
TRAILING_SPACE = PLAIN.replace('name: "deploy-{{ stack }}"', 'name: "deploy-{{ stack }} "')
NULLABLE = {field for field in PIPELINE_FIELDS if field != "triggers"}


def front50_save(
    document: dict[str, Any],
    *,
    user: str = "dave",
    index: int | None = None,
    api: bool = False,
    held: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The object Front50 writes when it saves document again, content unchanged.

    A reorder (ReorderPipelinesController: index) or an API save from Deck (PipelineController:
    name trimmed, cron ids), then StorageServiceSupport.update (lastModifiedBy, lastModified)
    and S3StorageService's Jackson with PipelineMixins: typed fields as held, nulls of typed
    fields left out, triggers [] and schema "1" by default, updateTs from lastModified,
    createdAt dropped on read; every other key (marker and lock included) as it was.
    """
    saved = {k: v for k, v in document.items() if k != "createdAt" and not (v is None and k in NULLABLE)}
    saved.update({k: v for k, v in (held or {}).items() if k in saved})
    saved.setdefault("triggers", [])
    saved["schema"] = saved.get("schema") or "1"
    if api:
        saved["name"] = saved["name"].strip()
        if saved.get("regenerateCronTriggerIds") is True:
            saved["triggers"] = [
                {**t, "id": str(uuid.uuid4())} if t.get("type") == "cron" else t for t in saved["triggers"]
            ]
    saved["updateTs"] = str(int(time.time() * 1000))
    saved["lastModifiedBy"] = user
    if index is not None:
        saved["index"] = index
    return saved


def put_raw(store: S3Store, document: dict[str, Any]) -> None:
    """Write document over the object at its id as someone other than pipeline-sync would."""
    key = store.pipeline_key(str(document["id"]))
    store.client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())


def live_document(store: S3Store, pipeline_id: str = PID) -> dict[str, Any]:
    live = store.read_pipeline(pipeline_id)
    assert live is not None and live.document is not None
    return live.document


def service_text(stacks: str = "  dev: {pipelines: [deploy]}\n") -> str:
    return f"name: svc\nproduct: prod-x\nteam: team-x\nnamespace: ns-x\ngit_repo: repo-x\nstacks:\n{stacks}"


def project_with(tmp_path: Path, template: str, *, services: dict[str, str] | None = None) -> Path:
    return build_project(
        tmp_path / "p",
        defaults=DEPLOY_DEFAULTS,
        services=services or {"svc": service_text()},
        templates={"deploy": template},
    ).root


def entry_of(project: Path, store: S3Store, key: str = KEY) -> PlanEntry:
    return engine.plan(workspace_of(project), store, Selection.of([key])).entries[key]


def apply_entry(project: Path, store: S3Store, entry: PlanEntry) -> None:
    results = engine.apply(workspace_of(project), store, {entry.key: entry.digest}, approver="alice")
    assert [r.outcome for r in results] == ["applied"], results


def apply_all(project: Path, store: S3Store) -> None:
    entry = entry_of(project, store)
    assert entry.status is Status.CREATE, entry.messages
    apply_entry(project, store, entry)


def change_description(project: Path) -> None:
    defaults = project / "catalog" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", "description: changed"))


# -- a re-save by Front50 is in sync ------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "save"),
    [
        pytest.param(PLAIN, {"index": 3}, id="reorder-adds-triggers-schema-index-timestamps"),
        pytest.param(PLAIN, {"api": True, "user": "erin"}, id="deck-save"),
        pytest.param(TYPED, {"index": 0, "held": TYPED_HELD}, id="jackson-conversions-nulls-createdAt"),
        pytest.param(CRON, {"api": True}, id="cron-ids-regenerated"),
        pytest.param(TRAILING_SPACE, {"api": True}, id="name-trimmed"),
    ],
)
def test_a_front50_resave_of_a_managed_pipeline_plans_in_sync(
    tmp_path: Path, store: S3Store, template: str, save: dict[str, Any]
) -> None:
    project = project_with(tmp_path, template)
    apply_all(project, store)
    written = live_document(store)
    resaved = front50_save(written, **save)
    assert resaved != written  # the save did change the object
    put_raw(store, resaved)
    entry = entry_of(project, store)
    assert (entry.status, entry.messages) == (Status.IN_SYNC, ())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"limitConcurrent": False}, "root['limitConcurrent']"),
        ({"triggers": None}, "root['triggers']"),  # null triggers break Front50's list endpoints
        ({"description": None}, "root['description']"),  # an untyped null is content
        ({"schema": "v2"}, "root['schema']"),
        ({"email": "ops@example.com"}, "root['email']"),
        ({"keepWaitingPipelines": False}, "root['keepWaitingPipelines']"),
        ({"maxConcurrentExecutions": 4}, "root['maxConcurrentExecutions']"),
    ],
)
def test_a_resave_that_changes_content_is_still_drift(
    tmp_path: Path, store: S3Store, change: dict[str, Any], field: str
) -> None:
    project = project_with(tmp_path, TYPED)
    apply_all(project, store)
    put_raw(store, {**front50_save(live_document(store), held=TYPED_HELD), **change})
    entry = entry_of(project, store)
    assert (entry.status, entry.drift_kind, entry.drift_fields) == (Status.DRIFT, "deck", (field,))


def test_cron_ids_count_when_the_pipeline_does_not_ask_front50_to_replace_them(
    tmp_path: Path, store: S3Store
) -> None:
    project = project_with(tmp_path, CRON.replace("regenerateCronTriggerIds: true\n", ""))
    apply_all(project, store)
    written = live_document(store)
    written["triggers"][0]["id"] = "changed-by-hand"
    put_raw(store, written)
    entry = entry_of(project, store)
    derived = str(entry.desired["triggers"][0]["id"]) if entry.desired else ""
    assert (entry.status, entry.drift_fields) == (
        Status.DRIFT,
        (f"root['triggers']['{derived}']", "root['triggers']['changed-by-hand']"),
    )


# -- apply keeps the live index and a stricter lock ---------------------------------------------


def test_apply_keeps_a_reordered_index_and_the_plan_digest_binds_it(tmp_path: Path, store: S3Store) -> None:
    project = project_with(tmp_path, PLAIN)
    apply_all(project, store)
    put_raw(store, front50_save(live_document(store), index=4))
    change_description(project)
    entry = entry_of(project, store)
    assert entry.status is Status.UPDATE and entry.desired is not None
    assert entry.desired["index"] == 4
    assert entry.digest == plan_digest(KEY, entry.live_etag, entry.desired)
    assert "index" not in entry.diff_yaml
    apply_entry(project, store, entry)
    live = live_document(store)
    assert (live["index"], live["description"]) == (4, "changed")
    assert live[MARKER_FIELD]["renderDigest"] == content_digest(live)
    assert entry_of(project, store).status is Status.IN_SYNC


def test_an_index_the_template_sets_wins_over_the_live_one(tmp_path: Path, store: S3Store) -> None:
    project = project_with(tmp_path, PLAIN)
    apply_all(project, store)
    put_raw(store, front50_save(live_document(store), index=4))
    (project / "templates" / "deploy.yaml.j2").write_text(PLAIN + "index: 1\n")
    change_description(project)
    entry = entry_of(project, store)
    assert entry.status is Status.UPDATE and entry.desired is not None and entry.desired["index"] == 1
    apply_entry(project, store, entry)
    assert live_document(store)["index"] == 1


def tighten_lock(document: dict[str, Any], **lock: Any) -> dict[str, Any]:
    return {**document, "locked": {**document["locked"], "allowUnlockUi": False, **lock}}


def test_a_stricter_lock_is_in_sync_and_kept_by_the_next_update(tmp_path: Path, store: S3Store) -> None:
    project = project_with(tmp_path, PLAIN)
    apply_all(project, store)
    put_raw(store, front50_save(tighten_lock(live_document(store))))
    assert entry_of(project, store).status is Status.IN_SYNC
    change_description(project)
    entry = entry_of(project, store)
    # All the person changed is the lock, which the write keeps: an update, not drift.
    assert entry.status is Status.UPDATE and entry.desired is not None
    assert entry.desired["locked"]["allowUnlockUi"] is False
    assert entry.digest == plan_digest(KEY, entry.live_etag, entry.desired)
    apply_entry(project, store, entry)
    live = live_document(store)
    assert live["locked"]["allowUnlockUi"] is False and live["locked"]["ui"] is True
    assert live[MARKER_FIELD]["renderDigest"] == content_digest(live)
    assert entry_of(project, store).status is Status.IN_SYNC


def test_a_stricter_lock_with_other_edits_is_drift_that_names_only_the_others(
    tmp_path: Path, store: S3Store
) -> None:
    project = project_with(tmp_path, PLAIN)
    apply_all(project, store)
    put_raw(store, {**tighten_lock(live_document(store)), "limitConcurrent": False})
    entry = entry_of(project, store)
    assert (entry.status, entry.drift_fields) == (Status.DRIFT, ("root['limitConcurrent']",))
    assert entry.desired is not None and entry.desired["locked"]["allowUnlockUi"] is False
    apply_entry(project, store, entry)
    live = live_document(store)
    assert live["limitConcurrent"] is True and live["locked"]["allowUnlockUi"] is False


def test_a_weaker_live_lock_is_not_kept(tmp_path: Path, store: S3Store) -> None:
    project = project_with(tmp_path, PLAIN)
    apply_all(project, store)
    unlocked = {k: v for k, v in live_document(store).items() if k != "locked"}  # Deck's Unlock
    put_raw(store, unlocked)
    entry = entry_of(project, store)
    assert (entry.status, entry.drift_fields) == (Status.DRIFT, ("root['locked']",))
    assert entry.desired is not None and entry.desired["locked"]["allowUnlockUi"] is True


def test_adoption_keeps_a_stricter_lock_and_the_index(tmp_path: Path, store: S3Store) -> None:
    pinned = service_text(stacks="  dev:\n    pipelines: [deploy]\n    ids: {deploy: legacy-1}\n")
    project = project_with(tmp_path, PLAIN, services={"svc": pinned})
    unmanaged = {
        "id": "legacy-1",
        "application": "svc",
        "name": "deploy-dev",
        "index": 2,
        "locked": {"ui": True, "allowUnlockUi": False, "description": "Locked by the release team."},
        "stages": [{"refId": "1", "type": "wait", "waitTime": 30}],
    }
    store.put_pipeline("legacy-1", json.dumps(unmanaged).encode(), if_match=None)
    entry = entry_of(project, store)
    assert (entry.status, entry.adopt) == (Status.UPDATE, True) and entry.desired is not None
    assert entry.desired["index"] == 2 and entry.desired["locked"]["allowUnlockUi"] is False
    assert entry.digest == plan_digest(KEY, entry.live_etag, entry.desired)
    apply_entry(project, store, entry)
    live = live_document(store, "legacy-1")
    assert (live["index"], live["locked"]["allowUnlockUi"]) == (2, False)
    assert live[MARKER_FIELD]["renderDigest"] == content_digest(live)
    assert entry_of(project, store).status is Status.IN_SYNC


# -- markers written before this normalisation ---------------------------------------------------


def normalise_before_2026_12(document: dict[str, Any]) -> dict[str, Any]:
    """provenance.normalise as it was (commit 65f8995), verbatim."""
    server_managed = ("updateTs", "lastModifiedBy", "lastModified", "index")
    clean = {k: v for k, v in document.items() if k not in server_managed and k != MARKER_FIELD}
    if clean.get("schema") == "1":
        del clean["schema"]
    return clean


def digest_before_2026_12(document: dict[str, Any]) -> str:
    return sha256_hex(canonical_json(normalise_before_2026_12(document)))


# Templates whose digest the new normalisation changes: what an old marker cannot match directly.
OLD_SHAPES = {
    "empty-triggers": PLAIN + "triggers: []\n",
    "typed-values": TYPED,
}


def write_as_before(project: Path, store: S3Store) -> dict[str, Any]:
    """Write the pipeline exactly as pipeline-sync did before this normalisation: its marker's
    renderDigest under the old one."""
    entry = entry_of(project, store)
    assert entry.status is Status.CREATE and entry.desired is not None
    document = copy.deepcopy(dict(entry.desired))
    document[MARKER_FIELD]["renderDigest"] = digest_before_2026_12(document)
    assert document[MARKER_FIELD]["renderDigest"] != content_digest(document)  # the case under test
    document.update(updateTs=str(int(time.time() * 1000)), lastModifiedBy="pipeline-sync")
    store.put_pipeline(PID, canonical_json(document).encode(), if_match=None)
    return document


@pytest.mark.parametrize(
    ("template", "resave"),
    [
        pytest.param(OLD_SHAPES["empty-triggers"], True, id="empty-triggers-resaved"),
        pytest.param(OLD_SHAPES["typed-values"], False, id="typed-values"),
    ],
)
def test_a_pipeline_written_before_still_plans_in_sync_and_updates(
    tmp_path: Path, store: S3Store, template: str, resave: bool
) -> None:
    # Not typed-values resaved: the old marker's digest covers values Front50 has converted
    # since, so that pipeline's next change plans as drift, once (README, Front50 normalisation).
    project = project_with(tmp_path, template)
    write_as_before(project, store)
    assert entry_of(project, store).status is Status.IN_SYNC
    assert not person_edited(store.read_live()[PID])  # no history lookups for it on every plan
    if resave:
        put_raw(store, front50_save(live_document(store), index=1))
        assert entry_of(project, store).status is Status.IN_SYNC
    change_description(project)
    entry = entry_of(project, store)
    assert (entry.status, entry.messages) == (Status.UPDATE, ())
    apply_entry(project, store, entry)
    assert entry_of(project, store).status is Status.IN_SYNC


@pytest.mark.parametrize("template", OLD_SHAPES.values(), ids=OLD_SHAPES.keys())
def test_a_person_edit_of_a_pipeline_written_before_is_deck_drift(
    tmp_path: Path, store: S3Store, template: str
) -> None:
    project = project_with(tmp_path, template)
    written = write_as_before(project, store)
    put_raw(store, {**written, "limitConcurrent": False, "lastModifiedBy": "dave"})
    entry = entry_of(project, store)
    assert (entry.status, entry.drift_kind, entry.drift_fields) == (
        Status.DRIFT,
        "deck",
        ("root['limitConcurrent']",),
    )


def test_history_finds_a_version_written_before_and_separates_the_persons_fields(
    tmp_path: Path, store: S3Store
) -> None:
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    project = project_with(tmp_path, OLD_SHAPES["empty-triggers"])
    written = write_as_before(project, store)
    put_raw(store, {**written, "limitConcurrent": False, "lastModifiedBy": "dave"})
    change_description(project)
    entry = entry_of(project, store)
    assert (entry.status, entry.drift_kind, entry.drift_fields) == (
        Status.DRIFT,
        "both",
        ("root['limitConcurrent']",),
    )


# -- the rules, one by one -----------------------------------------------------------------------

BASE: dict[str, Any] = {
    "id": PID,
    "application": "svc",
    "name": "deploy-dev",
    "stages": [{"refId": "1", "type": "wait"}],
    "triggers": [{"type": "cron", "id": "c-1", "cronExpression": "0 0 12 * * ?"}],
}


@pytest.mark.parametrize(
    ("variant", "same"),
    [
        ({"updateTs": "1", "lastModifiedBy": "x", "lastModified": 1, "createTs": "1", "index": 9}, True),
        ({"createdAt": 1712345678901}, True),
        ({"schema": "1"}, True),
        ({"schema": None}, True),
        ({"schema": 1}, True),
        ({"schema": ""}, True),
        ({"schema": " "}, False),
        ({"schema": "v2"}, False),
        ({"email": None, "spelEvaluator": None, "disabled": None, "stageCounter": ""}, True),
        ({"description": None}, False),
        ({"disabled": "TRUE"}, {"disabled": True}),
        ({"disabled": " false "}, {"disabled": False}),
        ({"disabled": 2}, {"disabled": True}),
        ({"disabled": 0}, {"disabled": False}),
        ({"disabled": "yes"}, False),  # Jackson refuses it: compared as it is
        ({"maxConcurrentExecutions": 2.9}, {"maxConcurrentExecutions": 2}),
        ({"maxConcurrentExecutions": " 7 "}, {"maxConcurrentExecutions": 7}),
        ({"maxConcurrentExecutions": "7.5"}, False),
        ({"email": 42}, {"email": "42"}),
        ({"email": True}, {"email": "true"}),
        ({"email": 1.5}, {"email": "1.5"}),
        ({"email": {"to": "x"}}, False),
        ({"roles": [7, False, "a"]}, {"roles": ["7", "false", "a"]}),
        ({"roles": "admins"}, False),
        ({"name": " deploy-dev\t"}, True),
        ({"name": "deploy-dev2"}, False),
        ({"triggers": []}, {"triggers": []}),
        ({"triggers": None}, False),
        ({"triggers": [{"type": "cron", "id": "c-2", "cronExpression": "0 0 12 * * ?"}]}, False),
        (
            {
                "regenerateCronTriggerIds": True,
                "triggers": [{"type": "cron", "id": "c-2", "cronExpression": "0 0 12 * * ?"}],
            },
            {"regenerateCronTriggerIds": True},
        ),
        (
            {
                "regenerateCronTriggerIds": "true",  # Front50's (boolean) cast fails: no regeneration
                "triggers": [{"type": "cron", "id": "c-2", "cronExpression": "0 0 12 * * ?"}],
            },
            False,
        ),
        ({"config": None}, True),
        ({"stages": [{"refId": "1", "type": "wait", "name": None}]}, False),  # inside a stage: content
    ],
)
def test_normalise_equates_exactly_what_front50_holds_alike(variant: dict[str, Any], same: object) -> None:
    """same: True (equal to BASE), False (different), or the fields BASE gets to be equal to it."""
    changed = {**BASE, **variant}
    if isinstance(same, dict):
        assert content_digest(changed) != content_digest(BASE)
        assert content_digest(changed) == content_digest({**BASE, **same})
    else:
        assert (content_digest(changed) == content_digest(BASE)) is same


def test_empty_triggers_and_no_triggers_are_the_same() -> None:
    without = {k: v for k, v in BASE.items() if k != "triggers"}
    assert content_digest({**BASE, "triggers": []}) == content_digest(without)
    assert "triggers" not in normalise({**BASE, "triggers": []})


@pytest.mark.parametrize(
    ("live", "kept"),
    [
        (None, {}),
        ({}, {}),
        ({"index": 3}, {"index": 3}),
        ({"index": "4"}, {"index": 4}),
        ({"index": 2.0}, {"index": 2}),
        ({"index": ""}, {}),  # Front50 reads it as null
        ({"index": "first"}, {}),  # Front50 could not load it: never written again
        ({"index": True}, {}),
        ({"index": 2**31}, {}),
        ({"locked": {"ui": True, "allowUnlockUi": True}}, {}),
        ({"locked": {"ui": True, "allowUnlockUi": False}}, {"allowUnlockUi": False}),
        ({"locked": {"ui": True}}, {"allowUnlockUi": False}),
        ({"locked": {}}, {"allowUnlockUi": False}),  # an empty object is truthy in Deck
        ({"locked": True}, {"allowUnlockUi": False}),
        ({"locked": {"allowUnlockUi": 0}}, {"allowUnlockUi": False}),
        ({"locked": {"allowUnlockUi": ""}}, {"allowUnlockUi": False}),
        ({"locked": {"allowUnlockUi": "false"}}, {}),  # a non-empty string is truthy in Deck
        ({"locked": None}, {}),
        ({"locked": False}, {}),
        ({"locked": ""}, {}),
        ({"locked": 0}, {}),
    ],
)
def test_kept_from_reads_index_as_front50_and_the_lock_as_deck(
    live: dict[str, Any] | None, kept: dict[str, Any]
) -> None:
    assert kept_from(live) == kept


def test_the_marker_digest_covers_what_is_kept() -> None:
    canonical = canonical_json({"id": PID, "application": "svc", "name": "n", "stages": []})
    live = {"index": 5, "locked": {"ui": True, "allowUnlockUi": False}}
    plain = managed_document(canonical, key=KEY, source_file="svc.yaml")
    kept = managed_document(canonical, key=KEY, source_file="svc.yaml", keep_from=live)
    assert (kept["index"], kept["locked"]["allowUnlockUi"]) == (5, False)
    assert kept[MARKER_FIELD]["renderDigest"] == content_digest(kept)
    assert kept[MARKER_FIELD]["renderDigest"] != plain[MARKER_FIELD]["renderDigest"]
    assert {k: v for k, v in kept.items() if k not in ("index", "locked", MARKER_FIELD)} == {
        k: v for k, v in plain.items() if k not in ("locked", MARKER_FIELD)
    }


@pytest.mark.parametrize(
    "document",
    [
        BASE,
        {**BASE, "schema": "1", "index": 3, "updateTs": "9", MARKER_FIELD: {"key": KEY}},
        {**BASE, "triggers": [], "createTs": "1", "email": None, "disabled": "true"},
    ],
)
def test_the_legacy_digest_is_the_one_markers_were_written_with(document: dict[str, Any]) -> None:
    assert legacy_content_digest(document) == digest_before_2026_12(document)
    assert as_written(document, digest_before_2026_12(document))
    assert as_written(document, content_digest(document))
    assert not as_written(document, content_digest({**document, "name": "other"}))
    assert not as_written(document, None)
