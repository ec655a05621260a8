"""Application names: a service's `application:` is what Spinnaker sees; its name still keys everything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, MakeProject
from s3support import BUCKET, object_keys, workspace_of

from pipeline_sync import engine
from pipeline_sync.adopt import adopt
from pipeline_sync.cli import main
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.ownership import Owner, ownership
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.status import Status
from pipeline_sync.store.front50 import ApplicationNameError, application_document
from pipeline_sync.store.s3 import S3Store
from pipeline_sync.validate import validate_pipeline

KEY = "checkout/prod/deploy"
DEV = "checkout/dev/deploy"
STACKS = "  dev: {pipelines: [deploy]}\n  prod: {pipelines: [deploy]}\n"
PRUNING = "prune: true\n" + DEPLOY_DEFAULTS


def cli(project: Path, *args: str) -> Result:
    options = ["--catalog", str(project / "catalog"), "--templates", str(project / "templates")]
    return CliRunner().invoke(main, [*options, *args])


def service_text(name: str, stacks: str = "  dev: {pipelines: [deploy]}\n", extra: str = "") -> str:
    return f"name: {name}\nproduct: prod-x\nteam: team-x\nnamespace: ns-x\ngit_repo: repo-x\n{extra}stacks:\n{stacks}"


def checkout(application: str | None, stacks: str = STACKS) -> str:
    extra = f"application: {application}\n" if application is not None else ""
    return service_text("checkout", stacks=stacks, extra=extra)


def small_project(
    make_project: MakeProject,
    root: Path,
    application: str | None,
    *,
    defaults: str = DEPLOY_DEFAULTS,
) -> Path:
    services = {"checkout": checkout(application), "search": service_text("search")}
    return make_project(
        root, defaults=defaults, services=services, templates={"deploy": DEPLOY_TEMPLATE}
    ).root


def apply_all(project: Path, store: S3Store) -> dict[str, Status]:
    """Apply every actionable entry as a person; returns the statuses that were applied."""
    ws = workspace_of(project)
    plan = engine.plan(ws, store)
    approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
    assert {r.outcome for r in engine.apply(ws, store, approved, approver="alice")} <= {"applied"}
    return {k: plan.entries[k].status for k in approved}


def live_body(store: S3Store, key: str) -> dict[str, Any]:
    response = store.client.get_object(Bucket=BUCKET, Key=store.pipeline_key(pipeline_id_for(key)))
    body: dict[str, Any] = json.loads(response["Body"].read())
    return body


def put_body(store: S3Store, key: str, document: dict[str, Any]) -> None:
    """Write a pipeline body at key's id behind pipeline-sync's back (a Deck save, a hand edit)."""
    pid = pipeline_id_for(key)
    store.client.put_object(Bucket=BUCKET, Key=store.pipeline_key(pid), Body=json.dumps(document))


def application_object(store: S3Store, folder: str) -> dict[str, Any]:
    key = f"front50/applications/{folder}/application-metadata.json"
    document: dict[str, Any] = json.loads(store.client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    return document


def statuses(project: Path, store: S3Store) -> dict[str, Status]:
    return {k: e.status for k, e in engine.plan(workspace_of(project), store).entries.items()}


# -- end to end: the example catalog with a Spinnaker application name ----------------------------


def test_plan_apply_and_replan_with_an_application_name(
    project: Path, store: S3Store, bucket_env: None
) -> None:
    service_file = project / "catalog" / "services" / "checkout.yaml"
    text = service_file.read_text()
    service_file.write_text(
        text.replace("name: checkout\n", "name: checkout\napplication: Checkout_API\n", 1)
    )
    applied = apply_all(project, store)
    assert KEY in applied and applied[KEY] is Status.CREATE  # keys and partitions keep the service name
    body = live_body(store, KEY)
    assert body["application"] == "Checkout_API"
    assert body["id"] == pipeline_id_for(KEY)
    assert body[MARKER_FIELD]["key"] == KEY
    assert application_object(store, "checkout_api")["name"] == "CHECKOUT_API"
    applications = [k for k in object_keys(store) if k.startswith("front50/applications/")]
    assert [k for k in applications if "checkout" in k] == [
        "front50/applications/checkout_api/application-metadata.json"
    ]
    result = cli(project, "plan")
    assert result.exit_code == 0, result.output  # nothing to do: every pipeline is in sync
    assert set(statuses(project, store).values()) == {Status.IN_SYNC}


def test_existing_catalogs_render_byte_identically(make_project: MakeProject, tmp_path: Path) -> None:
    implicit = workspace_of(small_project(make_project, tmp_path / "implicit", None))
    explicit = workspace_of(small_project(make_project, tmp_path / "explicit", "checkout"))
    for ws in (implicit, explicit):
        assert ws.catalog.targets[KEY].application == "checkout"
    assert (
        implicit.renderer.render(implicit.catalog.targets[KEY]).canonical
        == explicit.renderer.render(explicit.catalog.targets[KEY]).canonical
    )


# -- ownership: the target's application, compared as Front50 compares ----------------------------


@pytest.mark.parametrize(
    ("live_application", "owner", "reason"),
    [
        ("checkout_api", Owner.OURS, ""),
        ("CHECKOUT_API", Owner.OURS, ""),
        ("Checkout_Api", Owner.OURS, ""),
        (
            "checkout",
            Owner.NONE,
            f"its marker names {KEY}, but its application is 'checkout', not 'checkout_api' "
            "(service 'checkout''s application; a pipeline is never moved between applications)",
        ),
        (
            "checkout_api ",
            Owner.NONE,
            f"its marker names {KEY}, but its application is 'checkout_api ', not 'checkout_api' "
            "(service 'checkout''s application; a pipeline is never moved between applications)",
        ),
        (
            None,
            Owner.NONE,
            f"its marker names {KEY}, but its application is None, not 'checkout_api' "
            "(service 'checkout''s application; a pipeline is never moved between applications)",
        ),
    ],
)
def test_ownership_compares_the_application_case_insensitively(
    make_project: MakeProject, tmp_path: Path, live_application: str | None, owner: Owner, reason: str
) -> None:
    catalog = workspace_of(small_project(make_project, tmp_path, "checkout_api")).catalog
    found = ownership(catalog, pipeline_id_for(KEY), live_application, {"key": KEY})
    assert (found.owner, found.reason) == (owner, reason)


def test_a_pipeline_we_wrote_stays_ours_when_its_application_is_upper_cased(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    project = small_project(make_project, tmp_path, "checkout_api")
    apply_all(project, store)
    assert live_body(store, KEY)["application"] == "checkout_api"
    put_body(store, KEY, {**live_body(store, KEY), "application": "CHECKOUT_API"})
    entry = engine.plan(workspace_of(project), store).entries[KEY]
    assert entry.status is Status.DRIFT  # still ours: a person's edit to review, not a conflict
    ws = workspace_of(project)
    [result] = engine.apply(ws, store, {KEY: entry.digest}, approver="alice")
    assert result.outcome == "applied"
    assert live_body(store, KEY)["application"] == "checkout_api"


def test_a_pipeline_at_our_id_in_another_application_is_never_touched(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    project = small_project(make_project, tmp_path, "Checkout_API")
    apply_all(project, store)
    moved = {**live_body(store, KEY), "application": "payments"}
    put_body(store, KEY, moved)
    entry = engine.plan(workspace_of(project), store).entries[KEY]
    assert entry.status is Status.CONFLICT
    assert "its application is 'payments', not 'Checkout_API'" in entry.messages[0]
    [result] = engine.apply(workspace_of(project), store, {KEY: entry.digest}, approver="alice")
    assert result.outcome != "applied"
    assert live_body(store, KEY) == moved


def test_changing_only_the_case_of_the_application_is_an_update(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    apply_all(small_project(make_project, tmp_path / "before", "Checkout_API"), store)
    after = small_project(make_project, tmp_path / "after", "CHECKOUT_api")
    assert statuses(after, store)[KEY] is Status.UPDATE  # the render cache is keyed by the application too
    apply_all(after, store)
    assert live_body(store, KEY)["application"] == "CHECKOUT_api"
    assert [k for k in object_keys(store) if "checkout" in k and "/applications/" in k] == [
        "front50/applications/checkout_api/application-metadata.json"
    ]


def test_changing_the_application_never_moves_a_pipeline(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    apply_all(small_project(make_project, tmp_path / "before", "Checkout_API"), store)
    after = small_project(make_project, tmp_path / "after", "shop-checkout")
    entry = engine.plan(workspace_of(after), store).entries[KEY]
    assert entry.status is Status.CONFLICT
    assert (
        "not 'shop-checkout' (service 'checkout''s application; a pipeline is never moved"
        in entry.messages[0]
    )
    assert live_body(store, KEY)["application"] == "Checkout_API"


def test_a_leftover_of_a_removed_service_is_proven_only_in_the_default_application(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    project = small_project(make_project, tmp_path, "Checkout_API", defaults=PRUNING)
    apply_all(project, store)
    service_file = project / "catalog" / "services" / "checkout.yaml"
    service_file.unlink()
    plan = engine.plan(workspace_of(project), store)
    assert not [k for k in plan.entries if k.startswith("checkout/")]  # no delete, no orphan
    assert (
        f"live pipeline {pipeline_id_for(KEY)} is not managed: its marker names {KEY}, but its application is "
        "'Checkout_API', not 'checkout' (service 'checkout' has no readable file to say otherwise, so "
        "only its name is proven); left alone"
    ) in plan.warnings
    service_file.write_text(checkout("Checkout_API", stacks="  {}\n"))  # the file kept, no stacks
    entries = engine.plan(workspace_of(project), store).entries
    assert {entries[k].status for k in (KEY, DEV)} == {Status.DELETE}


@pytest.mark.parametrize(
    ("broken", "known"),
    [
        (checkout("Checkout_API", stacks="  qa: {pipelines: [deploy]}\n"), True),  # parsed: undeclared stack
        ("name: checkout\nstacks: [\n", False),  # unreadable: its application is unknown
    ],
)
def test_a_broken_service_file_never_deletes_its_pipelines(
    make_project: MakeProject, store: S3Store, tmp_path: Path, broken: str, known: bool
) -> None:
    project = small_project(make_project, tmp_path, "Checkout_API", defaults=PRUNING)
    apply_all(project, store)
    (project / "catalog" / "services" / "checkout.yaml").write_text(broken)
    plan = engine.plan(workspace_of(project), store)
    assert Status.DELETE not in {e.status for e in plan.entries.values()}
    checkout_entries = {k: e.status for k, e in plan.entries.items() if k.startswith("checkout/")}
    if known:  # the file still said its application: its pipelines are ours, status unknown
        assert checkout_entries == {KEY: Status.UNKNOWN, DEV: Status.UNKNOWN}
    else:  # nothing proves them ours: left alone, with a warning each
        assert checkout_entries == {}
        assert len([w for w in plan.warnings if "only its name is proven" in w]) == 2


def test_a_leftover_in_the_default_application_is_still_pruned(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    project = small_project(make_project, tmp_path, None, defaults=PRUNING)
    apply_all(project, store)
    (project / "catalog" / "services" / "checkout.yaml").unlink()
    entries = engine.plan(workspace_of(project), store).entries
    assert {entries[k].status for k in (KEY, DEV)} == {Status.DELETE}


# -- adoption matches the application case-insensitively -----------------------------------------

LEGACY = {"id": "legacy-checkout", "name": "DEPLOY-prod", "stages": [{"refId": "1", "type": "wait"}]}


def test_adopt_finds_the_target_by_its_application(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    project = small_project(make_project, tmp_path, "Checkout_API")
    store.put_pipeline(
        "legacy-checkout", json.dumps({**LEGACY, "application": "CHECKOUT_API"}).encode(), if_match=None
    )
    done = adopt(project / "catalog", project / "templates", store, "checkout_api", "deploy-prod")
    assert (done.key, done.pipeline_id) == (KEY, "legacy-checkout")
    assert done.entry.status is Status.UPDATE and done.entry.adopt
    assert done.entry.desired is not None and done.entry.desired["application"] == "Checkout_API"


def test_a_pin_adopts_only_in_the_targets_application_not_the_service_name(
    make_project: MakeProject, store: S3Store, tmp_path: Path
) -> None:
    store.put_pipeline(
        "legacy-checkout", json.dumps({**LEGACY, "application": "checkout"}).encode(), if_match=None
    )
    stacks = "  prod: {pipelines: [deploy], ids: {deploy: legacy-checkout}}\n"
    project = make_project(
        tmp_path,
        defaults=DEPLOY_DEFAULTS,
        services={"checkout": checkout("Checkout_API", stacks=stacks)},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root
    entry = engine.plan(workspace_of(project), store).entries[KEY]
    assert entry.status is Status.CONFLICT
    assert "belongs to application 'checkout', not 'Checkout_API'" in entry.messages[0]


# -- names that would break a key are never written -----------------------------------------------


@pytest.mark.parametrize("application", ["../x", "a/b", "..", "", "a\x00b", "x" * 251])
def test_the_application_object_is_never_written_for_an_unsafe_name(store: S3Store, application: str) -> None:
    with pytest.raises(ApplicationNameError) as caught:
        application_document(application, None)
    message = str(caught.value)
    assert message.startswith(f"the application object for {application!r} was not created: ")
    assert message.endswith("; set the service's `application:` to a name Front50 and Deck accept")
    before = object_keys(store)
    with pytest.raises(ApplicationNameError):
        store.ensure_application(application, "owner@example.com")
    assert object_keys(store) == before


def test_a_restored_version_with_an_unsafe_application_does_not_validate() -> None:
    document = {"id": "x", "name": "n", "application": "../applications/x", "stages": []}
    [problem] = validate_pipeline(KEY, document)
    assert str(problem) == (
        f"[{KEY}] application: '../applications/x' is not a Spinnaker application name (letters, digits, "
        "'_', '-' and '.', starting with a letter or digit, no '..', at most 250 characters); Front50 keys "
        "the application by its name lower-cased, so pipeline-sync writes only names Front50 and Deck accept"
    )
