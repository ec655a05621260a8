"""The CLI in process (click's runner on pipeline_sync.cli.main) against moto: every verb, its output, its exit code.

Every test runs inside mock_aws with PIPELINE_SYNC_BUCKET naming the moto bucket, so the CLI builds its
own store exactly as it would against Front50's bucket. tests/test_cli_e2e.py runs the installed command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, MakeProject, Project
from s3support import BUCKET, object_keys

from pipeline_sync.cli import main
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.plan import Plan
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.status import Status
from pipeline_sync.store.s3 import S3Store

pytestmark = pytest.mark.usefixtures("store", "bucket_env")

DEV, PROD = "svc/dev/deploy", "svc/prod/deploy"
DEV_ID, PROD_ID = pipeline_id_for(DEV), pipeline_id_for(PROD)
STACKS = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}
SERVICES = {"svc": {"stacks": STACKS}}

# prod's only stage waits for a stage that does not exist: svc/prod/deploy renders but is invalid
INVALID_PROD = DEPLOY_TEMPLATE + '{% if stack == "prod" %}    requisiteStageRefIds: [nowhere]\n{% endif %}'
PROD_PROBLEMS = (
    "[svc/prod/deploy] stages[0].requisiteStageRefIds[0]: requisite 'nowhere' names no stage of this "
    "pipeline; known refIds: 'deploy'\n"
    "[svc/prod/deploy] stages: no stage can start: every stage waits for another in requisiteStageRefIds; "
    "give the first stage requisiteStageRefIds: []\n"
)
BROKEN_SERVICE = "name: bad\nproduct: p\nteam: t\nnamespace: n\ngit_repo: g\ntema: typo\nstacks:\n  dev: {pipelines: [deploy]}\n"
BROKEN_ERROR = (
    "catalog/services/bad.yaml:6: tema: unknown key 'tema'; check its spelling against the catalog reference "
    "(keys here: application, email, git_repo, name, namespace, product, prune, stacks, team, vars)"
)

DEV_CREATE = f"""
create: svc/dev/deploy  (digest {{digest}})
  values_changed:
    root:
      new_value:
        application: svc
        description: plain
        id: {DEV_ID}
        locked:
          allowUnlockUi: true
          description: 'Managed by pipeline-sync from catalog/services/svc.yaml (svc/dev/deploy). Edit the
            catalog or template instead: changes made here show up as drift.'
          ui: true
        name: deploy-dev
        stages:
          deploy:
            account: k8s-dev
            refId: deploy
            type: deployManifest
      old_value: {{{{}}}}
"""

LEGACY = {
    "id": "legacy-1",
    "application": "svc",
    "name": "Deploy-Prod",
    "stages": [{"refId": "1", "type": "wait", "waitTime": 30}],
}


@pytest.fixture
def tree(make_project: MakeProject, tmp_path: Path) -> Project:
    """One service, svc, deployed to dev (approval: auto) and prod."""
    return make_project(
        tmp_path / "p", defaults=DEPLOY_DEFAULTS, services=SERVICES, templates={"deploy": DEPLOY_TEMPLATE}
    )


def cli(project: Project, *args: str) -> Result:
    options = ["--catalog", str(project.catalog_dir), "--templates", str(project.templates_dir)]
    return CliRunner().invoke(main, [*options, *args])


def rendered(stack: str) -> dict[str, Any]:
    """What the catalog renders for svc/<stack>/deploy (what `render` prints)."""
    return {
        "application": "svc",
        "description": "plain",
        "id": pipeline_id_for(f"svc/{stack}/deploy"),
        "name": f"deploy-{stack}",
        "stages": [{"account": f"k8s-{stack}", "refId": "deploy", "type": "deployManifest"}],
    }


def digests(project: Project, *select: str) -> dict[str, str]:
    """The current plan's digest of each key, from `plan --json`."""
    result = cli(project, "plan", "--json", *select)
    assert result.exit_code in (0, 1, 2), result.output
    return {e["key"]: e["digest"] for e in json.loads(result.stdout)["entries"]}


def plan_and_apply(project: Project, tmp_path: Path, *select: str) -> None:
    planned = cli(project, "plan", "--out", str(tmp_path / "applied.json"), *select)
    assert planned.exit_code == 2, planned.output
    applied = cli(project, "apply", str(tmp_path / "applied.json"), "--approver", "carol")
    assert applied.exit_code == 0, applied.output


def set_description(project: Project, text: str) -> None:
    defaults = project.catalog_dir / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("description: plain", f"description: {text}"))


# -- validate ---------------------------------------------------------------------------------


def test_validate_a_valid_catalog_exits_0(tree: Project) -> None:
    result = cli(tree, "validate")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "2 targets: 2 valid, 0 invalid; 0 catalog files failed\n",
        "",
    )


@pytest.mark.parametrize(
    ("template", "services", "stdout", "stderr"),
    [
        (
            INVALID_PROD,
            SERVICES,
            PROD_PROBLEMS,
            "2 targets: 1 valid, 1 invalid; 0 catalog files failed\n",
        ),
        (
            DEPLOY_TEMPLATE,
            {**SERVICES, "bad": BROKEN_SERVICE},
            "",
            f"error: {BROKEN_ERROR}\n2 targets: 2 valid, 0 invalid; 1 catalog file failed\n",
        ),
        (
            INVALID_PROD,
            {**SERVICES, "bad": BROKEN_SERVICE, "worse": BROKEN_SERVICE.replace("bad", "worse")},
            PROD_PROBLEMS,
            f"error: {BROKEN_ERROR}\nerror: {BROKEN_ERROR.replace('bad', 'worse')}\n"
            "2 targets: 1 valid, 1 invalid; 2 catalog files failed\n",
        ),
    ],
    ids=["invalid-target", "broken-file", "both"],
)
def test_validate_prints_each_problem_and_exits_1(
    make_project: MakeProject,
    tmp_path: Path,
    template: str,
    services: dict[str, Any],
    stdout: str,
    stderr: str,
) -> None:
    project = make_project(
        tmp_path, defaults=DEPLOY_DEFAULTS, services=services, templates={"deploy": template}
    )
    result = cli(project, "validate")
    assert (result.exit_code, result.stdout, result.stderr) == (1, stdout, stderr)


TYPO_SERVICE = """\
name: svc
product: p
team: t
namespace: n
git_repo: g
vars: {descripton: typo}
stacks:
  dev: {pipelines: [deploy]}
  prod:
    pipelines: [deploy]
    vars:
      never_read: 1
"""


def test_validate_warns_about_variables_no_template_reads_and_still_exits_0(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path,
        defaults=DEPLOY_DEFAULTS,
        services={"svc": TYPO_SERVICE},
        templates={"deploy": DEPLOY_TEMPLATE},
    )
    result = cli(project, "validate")
    assert (result.exit_code, result.stdout) == (0, "2 targets: 2 valid, 0 invalid; 0 catalog files failed\n")
    assert result.stderr == (
        "warning: catalog/services/svc.yaml:6: vars.descripton: variable 'descripton' is set here, but no "
        "template it reaches (deploy) reads it; did you mean 'description'?\n"
        "warning: catalog/services/svc.yaml:12: stacks.prod.vars.never_read: variable 'never_read' is set "
        "here, but no template it reaches (deploy) reads it; remove it, or use it in a template\n"
    )


# -- render -----------------------------------------------------------------------------------


def test_render_prints_the_selected_pipelines_as_json(tree: Project) -> None:
    result = cli(tree, "render", "--select", "svc/dev/*")
    assert result.exit_code == 0, result.output
    assert result.stdout == json.dumps({DEV: rendered("dev")}, indent=2, sort_keys=True) + "\n"
    assert result.stderr == ""
    everything = cli(tree, "render")
    assert json.loads(everything.stdout) == {DEV: rendered("dev"), PROD: rendered("prod")}


def test_render_out_writes_front50s_layout(tree: Project, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli(tree, "render", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = {
        key: out / "pipelines" / pid / "pipeline-metadata.json"
        for key, pid in ((DEV, DEV_ID), (PROD, PROD_ID))
    }
    assert result.stdout == f"{DEV} -> {files[DEV]}\n{PROD} -> {files[PROD]}\n"
    for key, stack in ((DEV, "dev"), (PROD, "prod")):
        assert files[key].read_text() == json.dumps(rendered(stack), indent=2, sort_keys=True) + "\n"
    assert sorted(p.relative_to(out).parts[0] for p in out.rglob("*") if p.is_file()) == ["pipelines"] * 2


def test_render_leaves_out_what_is_invalid_and_exits_1(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p", defaults=DEPLOY_DEFAULTS, services=SERVICES, templates={"deploy": INVALID_PROD}
    )
    printed = cli(project, "render")
    assert printed.exit_code == 1
    assert printed.stdout == json.dumps({DEV: rendered("dev")}, indent=2, sort_keys=True) + "\n"
    assert printed.stderr == "".join(f"error: {line}\n" for line in PROD_PROBLEMS.splitlines())
    out = tmp_path / "out"
    written = cli(project, "render", "--out", str(out))
    assert written.exit_code == 1
    assert written.stdout == f"{DEV} -> {out / 'pipelines' / DEV_ID / 'pipeline-metadata.json'}\n"
    assert not (out / "pipelines" / PROD_ID).exists()


# -- plan -------------------------------------------------------------------------------------


def test_plan_prints_each_change_saves_the_plan_and_exits_2(
    store: S3Store, tree: Project, tmp_path: Path
) -> None:
    out = tmp_path / "plan.json"
    result = cli(tree, "plan", "--select", "svc/dev/*", "--out", str(out))
    assert result.exit_code == 2, result.output
    digest = digests(tree, "--select", "svc/dev/*")[DEV]
    assert result.stdout == (
        DEV_CREATE.format(digest=digest)
        + "\nSummary: 1 create\n"
        + f"\nSaved the plan to {out}. Apply exactly it with: pipeline-sync apply {out}\n"
    )
    assert result.stderr == ""
    saved = Plan.from_json(json.loads(out.read_text()))
    assert [(e.key, e.status, e.digest) for e in saved.entries.values()] == [(DEV, Status.CREATE, digest)]
    assert object_keys(store) == []  # planning writes nothing


def test_plan_json_lists_every_entry_and_select_narrows_it(tree: Project) -> None:
    result = cli(tree, "plan", "--json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"entries", "summary", "warnings"} and data["warnings"] == []
    assert data["summary"]["counts"] == {"create": 2}
    assert data["summary"]["pending"] == [DEV, PROD]
    fields = {
        "adopt",
        "diff",
        "digest",
        "drift_fields",
        "drift_kind",
        "key",
        "messages",
        "pipeline_id",
        "status",
    }
    assert [set(e) for e in data["entries"]] == [fields, fields]
    assert [(e["key"], e["status"], e["pipeline_id"], e["adopt"]) for e in data["entries"]] == [
        (DEV, "create", DEV_ID, False),
        (PROD, "create", PROD_ID, False),
    ]
    selected = cli(tree, "plan", "--json", "--select", "svc/prod/*")
    assert selected.exit_code == 2
    [entry] = json.loads(selected.stdout)["entries"]
    assert entry == data["entries"][1]


def test_plan_of_a_catalog_in_sync_exits_0(tree: Project, tmp_path: Path) -> None:
    plan_and_apply(tree, tmp_path)
    result = cli(tree, "plan")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "\nSummary: 2 in-sync\n", "")
    as_json = cli(tree, "plan", "--json")
    assert as_json.exit_code == 0
    assert {e["status"] for e in json.loads(as_json.stdout)["entries"]} == {"in-sync"}


def test_plan_with_an_invalid_target_exits_1(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p", defaults=DEPLOY_DEFAULTS, services=SERVICES, templates={"deploy": INVALID_PROD}
    )
    digest = digests(project, "--select", "svc/prod/*")[PROD]
    result = cli(project, "plan", "--select", "svc/prod/*")
    assert result.exit_code == 1
    problems = "".join(f"  {line}\n" for line in PROD_PROBLEMS.splitlines())
    assert result.stdout == (
        f"\ninvalid: svc/prod/deploy  (digest {digest})\n"
        + problems
        + "  catalog/services/svc.yaml: stacks.prod.pipelines lists template 'deploy'; nothing is written "
        "for svc/prod/deploy until the problems above are fixed\n"
        "\nSummary: 1 invalid\n"
    )


def test_plan_exits_1_when_a_catalog_file_fails_even_with_changes_pending(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        defaults=DEPLOY_DEFAULTS,
        services={**SERVICES, "bad": BROKEN_SERVICE},
        templates={"deploy": DEPLOY_TEMPLATE},
    )
    result = cli(project, "plan")
    assert result.exit_code == 1
    assert result.stderr == f"error: {BROKEN_ERROR}\n"
    assert result.stdout.endswith(
        "\nSummary: 2 create\n  the same change in 2 pipelines (dev: 1, prod: 1), e.g. svc/dev/deploy\n"
    )


def test_plan_without_a_bucket_exits_1(tree: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPELINE_SYNC_BUCKET")
    result = cli(tree, "plan")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error: PIPELINE_SYNC_BUCKET is not set: export the name of Front50's S3 bucket "
        "(and PIPELINE_SYNC_ROOT if its root folder is not 'front50').\n"
    )


# -- apply ------------------------------------------------------------------------------------


def test_apply_writes_exactly_the_saved_plan_and_exits_0(
    store: S3Store, tree: Project, tmp_path: Path
) -> None:
    assert cli(tree, "plan", "--out", str(tmp_path / "plan.json")).exit_code == 2
    result = cli(tree, "apply", str(tmp_path / "plan.json"), "--approver", "carol")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"applied: svc/dev/deploy: create -> front50/pipelines/{DEV_ID}/pipeline-metadata.json "
        "(created application svc)\n"
        f"applied: svc/prod/deploy: create -> front50/pipelines/{PROD_ID}/pipeline-metadata.json\n"
        "2 applied, 0 refused or failed (approver: carol)\n"
    )
    assert result.stderr == ""
    for pid, stack in ((DEV_ID, "dev"), (PROD_ID, "prod")):
        live = store.read_pipeline(pid)
        assert live is not None and live.document is not None
        assert {k: v for k, v in live.document.items() if k in rendered(stack)} == rendered(stack)
        assert live.document[MARKER_FIELD]["approvedBy"] == "carol"


def test_apply_select_applies_only_the_matching_entries(
    store: S3Store, tree: Project, tmp_path: Path
) -> None:
    assert cli(tree, "plan", "--out", str(tmp_path / "plan.json")).exit_code == 2
    result = cli(tree, "apply", str(tmp_path / "plan.json"), "--select", "svc/prod/*", "--approver", "carol")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"applied: svc/prod/deploy: create -> front50/pipelines/{PROD_ID}/pipeline-metadata.json "
        "(created application svc)\n"
        "1 applied, 0 refused or failed (approver: carol)\n"
    )
    assert store.read_pipeline(DEV_ID) is None


def test_apply_refuses_a_stale_plan_writes_nothing_and_exits_1(
    store: S3Store, tree: Project, tmp_path: Path
) -> None:
    approved = digests(tree, "--select", "svc/dev/*")[DEV]
    assert cli(tree, "plan", "--select", "svc/dev/*", "--out", str(tmp_path / "plan.json")).exit_code == 2
    set_description(tree, "changed after the plan was saved")
    current = digests(tree, "--select", "svc/dev/*")[DEV]
    assert current != approved
    result = cli(tree, "apply", str(tmp_path / "plan.json"), "--approver", "carol")
    assert result.exit_code == 1
    assert result.stdout == "0 applied, 1 refused or failed (approver: carol)\n"
    assert result.stderr == (
        f"stale: svc/dev/deploy: stale plan: the approved digest {approved[:12]} is not the current plan "
        f"({current[:12]}, create); nothing was written. Plan and approve again.\n"
    )
    assert object_keys(store) == []


def test_apply_refuses_an_approver_that_claims_to_be_policy_and_exits_1(
    store: S3Store, tree: Project, tmp_path: Path
) -> None:
    assert cli(tree, "plan", "--select", "svc/dev/*", "--out", str(tmp_path / "plan.json")).exit_code == 2
    result = cli(tree, "apply", str(tmp_path / "plan.json"), "--approver", "policy:approval=auto")
    assert result.exit_code == 1
    assert result.stdout == "0 applied, 1 refused or failed (approver: policy:approval=auto)\n"
    assert result.stderr == (
        "refused: svc/dev/deploy: approver names beginning with 'policy:' are reserved for stack policy\n"
    )
    assert object_keys(store) == []


def test_apply_of_a_plan_with_nothing_to_do_exits_0(tree: Project, tmp_path: Path) -> None:
    plan_and_apply(tree, tmp_path)
    assert cli(tree, "plan", "--out", str(tmp_path / "quiet.json")).exit_code == 0
    result = cli(tree, "apply", str(tmp_path / "quiet.json"))
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "Nothing to apply: the plan has no create, update, drift or delete entries.\n",
        "",
    )


def test_apply_of_a_file_that_is_not_a_plan_exits_1(store: S3Store, tree: Project, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a plan\n")
    result = cli(tree, "apply", str(path))
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: {path} is not a pipeline-sync plan: Expecting value: line 1 column 1 (char 0)\n"
    )
    assert object_keys(store) == []


# -- adopt ------------------------------------------------------------------------------------


def test_adopt_pins_the_id_prints_the_difference_and_the_next_steps(store: S3Store, tree: Project) -> None:
    store.put_pipeline("legacy-1", json.dumps(LEGACY).encode(), if_match=None)
    service = tree.catalog_dir / "services" / "svc.yaml"
    result = cli(tree, "adopt", "svc", "DEPLOY-PROD")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Adopting pipeline legacy-1 (svc/deploy-prod) as svc/prod/deploy.\n"
        f"Pinned its id in {service}: stacks.prod.ids.deploy\n"
        "\nHow the live pipeline differs from what the catalog renders (applying writes the catalog's):\n"
        "--- live/svc/prod/deploy\n"
        "+++ rendered/svc/prod/deploy\n"
        "@@ -1,7 +1,13 @@\n"
        " application: svc\n"
        "+description: plain\n"
        " id: legacy-1\n"
        "-name: Deploy-Prod\n"
        "+locked:\n"
        "+  allowUnlockUi: true\n"
        "+  description: 'Managed by pipeline-sync from catalog/services/svc.yaml (svc/prod/deploy). Edit the "
        "catalog\n"
        "+    or template instead: changes made here show up as drift.'\n"
        "+  ui: true\n"
        "+name: deploy-prod\n"
        " stages:\n"
        "-- refId: '1'\n"
        "-  type: wait\n"
        "-  waitTime: 30\n"
        "+- account: k8s-prod\n"
        "+  refId: deploy\n"
        "+  type: deployManifest\n"
        "\n"
        "Next: commit the catalog change, then `pipeline-sync plan --select svc/prod/deploy --out plan.json` "
        "(an update that adopts it, same id) and `pipeline-sync apply plan.json`.\n"
    )
    assert result.stderr == ""
    assert tree.load().targets[PROD].pinned_id == "legacy-1"
    [entry] = json.loads(cli(tree, "plan", "--json", "--select", PROD).stdout)["entries"]
    assert (entry["status"], entry["adopt"], entry["pipeline_id"]) == ("update", True, "legacy-1")
    assert json.loads(
        store.client.get_object(Bucket=BUCKET, Key=store.pipeline_key("legacy-1"))["Body"].read()
    ) == (LEGACY)  # adopting edits the catalog, never the bucket


def test_adopt_refusal_exits_1_and_leaves_the_catalog_alone(store: S3Store, tree: Project) -> None:
    store.put_pipeline("legacy-1", json.dumps(LEGACY).encode(), if_match=None)
    service = tree.catalog_dir / "services" / "svc.yaml"
    before = service.read_bytes()
    result = cli(tree, "adopt", "svc", "deploy-qa")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error: no pipeline named 'deploy-qa' in application 'svc' is in the bucket "
        "(names are compared case-insensitively, as Front50 does)\n"
    )
    assert service.read_bytes() == before


# -- rollback --list --------------------------------------------------------------------------


def test_rollback_list_shows_every_stored_version_newest_first(
    store: S3Store, tree: Project, tmp_path: Path
) -> None:
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    plan_and_apply(tree, tmp_path, "--select", "svc/dev/*")
    set_description(tree, "second")
    plan_and_apply(tree, tmp_path, "--select", "svc/dev/*")
    listed = store.client.list_object_versions(Bucket=BUCKET, Prefix=store.pipeline_key(DEV_ID))["Versions"]
    newest, oldest = sorted(listed, key=lambda v: not v["IsLatest"])
    expected = "".join(
        f"{v['VersionId']}  {v['LastModified']:%Y-%m-%dT%H:%M:%S.000Z}{live}\n"  # as S3 sends it
        for v, live in ((newest, " (live)"), (oldest, ""))
    )
    for target in (DEV, DEV_ID):  # by partition key or by pipeline id
        result = cli(tree, "rollback", target, "--list")
        assert (result.exit_code, result.stdout, result.stderr) == (0, expected, "")


def test_rollback_list_of_an_unknown_key_exits_1(tree: Project) -> None:
    result = cli(tree, "rollback", "other/dev/deploy", "--list")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error: no live pipeline is managed as 'other/dev/deploy', and it is not in the catalog; "
        "roll back by pipeline id instead\n"
    )
