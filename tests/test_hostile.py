"""The hostile corpus (tests/hostile/): every bad input gets a clear error and nothing written; the rest carry on."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, MakeProject
from guards import deadline, memory_cap
from s3support import PROJECT, object_keys, workspace_of

from pipeline_sync import engine
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.plan import Plan, build_plan
from pipeline_sync.rendering import render_all
from pipeline_sync.safefiles import MAX_SOURCE_FILE_BYTES
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Store

CORPUS = Path(__file__).parent / "hostile"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
INJECTION = 'x" : y\nnew_key: injected # {{ 7*7 }} {% if true %}'


def plant(path: Path, kind: str, text: str, outside: Path) -> None:
    """Put at path what git cannot hold (plant.txt: "service|template KIND"): a FIFO, a link, ...

    An "outside" link leads to text in a file in the outside directory; an "oversize" file holds
    text and is then extended (sparsely) past the size limit.
    """
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "outside":
        (outside / f"outside-{path.name}").write_text(text)
        path.symlink_to(outside / f"outside-{path.name}")
    elif kind == "oversize":
        path.write_text(text)
        os.truncate(path, MAX_SOURCE_FILE_BYTES + 1)
    else:
        raise ValueError(f"plant.txt names an unknown kind {kind!r}")


def build_project(root: Path) -> Path:
    shutil.copytree(PROJECT / "catalog", root / "catalog")
    shutil.copytree(PROJECT / "templates", root / "templates")
    for case in CASES:
        service = (CORPUS / case / "service.yaml").read_text()
        template = CORPUS / case / "template.yaml.j2"
        planted = CORPUS / case / "plant.txt"
        which, kind = planted.read_text().split() if planted.exists() else ("", "")
        template_path = root / "templates" / f"{case}.yaml.j2"
        if which == "template":
            plant(template_path, kind, template.read_text() if template.exists() else "", root.parent)
        elif template.exists():
            shutil.copy(template, template_path)
        if template_path.exists() or template_path.is_symlink():
            service = service.replace("pipelines: [deploy]", f"pipelines: [{case}]")
        service_path = root / "catalog" / "services" / f"{case}.yaml"
        if which == "service":
            plant(service_path, kind, service, root.parent)
        else:
            service_path.write_text(service)
    injected = (root / "catalog" / "services" / "catalog-api.yaml").read_text()
    injected = injected.replace(
        "git_repo: catalog-api\n", f"git_repo: catalog-api\nvars: {{git_org: {json.dumps(INJECTION)}}}\n"
    )
    (root / "catalog" / "services" / "catalog-api.yaml").write_text(injected)
    return root


def plan_of(root: Path, store: S3Store) -> tuple[Plan, str]:
    ws = workspace_of(root)
    plan = build_plan(ws.catalog, render_all(ws), store.read_live())
    text = "\n".join(
        [*(str(e) for e in ws.catalog.errors), *(m for e in plan.entries.values() for m in e.messages)]
    )
    return plan, text


@pytest.fixture
def hostile_run(tmp_path: Path, store: S3Store) -> tuple[Plan, str, S3Store]:
    root = build_project(tmp_path / "project")
    store.put_pipeline("not-json", b"{this is not json", if_match=None)
    store.put_pipeline("no-id", b'{"name": "x", "application": "checkout"}', if_match=None)
    # A FIFO or /dev/zero in the corpus must fail its case, not hang the run or exhaust memory.
    with deadline(120), memory_cap(1 << 30):
        plan, text = plan_of(root, store)
        approved = {k: e.digest for k, e in plan.entries.items() if e.actionable}
        results = engine.apply(workspace_of(root), store, approved, approver="alice")
    assert {r.outcome for r in results} == {"applied"}
    return plan, text, store


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_is_named_and_writes_nothing(
    hostile_run: tuple[Plan, str, S3Store], case: str
) -> None:
    plan, text, store = hostile_run
    for fragment in (CORPUS / case / "expected.txt").read_text().splitlines():
        assert fragment in text, f"{case}: {fragment!r} not in errors"
    for entry in plan.entries.values():
        if entry.key.startswith(f"{case}/"):
            assert entry.status is Status.INVALID and not entry.actionable
    for key in object_keys(store):
        assert f"/{case}/" not in key


def test_good_pipelines_carry_on(hostile_run: tuple[Plan, str, S3Store]) -> None:
    plan, _, store = hostile_run
    applied = [e for e in plan.entries.values() if e.status is Status.CREATE]
    assert len(applied) == 13
    assert "front50/pipelines/not-json/pipeline-metadata.json" in object_keys(store)
    assert any("not-json" in w and "not valid JSON" in w for w in plan.warnings)


def test_injected_values_are_inert_and_the_pipeline_intact(
    hostile_run: tuple[Plan, str, S3Store],
) -> None:
    _, _, store = hostile_run
    live = store.read_pipeline(pipeline_id_for("catalog-api/prod/deploy"))
    assert live is not None and live.document is not None
    git_trigger = live.document["triggers"][0]
    assert git_trigger["project"] == INJECTION
    assert "new_key" not in live.document and "new_key" not in git_trigger


def test_two_targets_with_one_name_are_both_refused(
    make_project: MakeProject, tmp_path: Path, store: S3Store
) -> None:
    root = make_project(
        tmp_path,
        defaults=DEPLOY_DEFAULTS,
        services={"svc": {"stacks": {"dev": {"pipelines": ["a", "b"]}}}},
        templates={"a": "name: Same\nstages: []\n", "b": "name: same\nstages: []\n"},
    ).root
    plan, text = plan_of(root, store)
    assert (
        plan.entries["svc/dev/a"].status is Status.INVALID
        and plan.entries["svc/dev/b"].status is Status.INVALID
    )
    assert "svc/dev/b" in " ".join(plan.entries["svc/dev/a"].messages)
    assert "{{ stack }}" in text


def test_pinned_id_used_by_another_target_is_refused(
    make_project: MakeProject, tmp_path: Path, store: S3Store
) -> None:
    taken = pipeline_id_for("svc/dev/deploy")
    stacks = {"dev": {"pipelines": ["deploy"], "ids": {"deploy": taken}}}
    root = make_project(
        tmp_path,
        defaults=DEPLOY_DEFAULTS,
        services={"svc": {}, "other": {"stacks": stacks}},
        templates={"deploy": DEPLOY_TEMPLATE},
    ).root
    plan, _ = plan_of(root, store)
    for key, other in (("svc/dev/deploy", "other/dev/deploy"), ("other/dev/deploy", "svc/dev/deploy")):
        assert plan.entries[key].status is Status.INVALID
        assert other in " ".join(plan.entries[key].messages)
    assert object_keys(store) == []
