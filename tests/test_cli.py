"""The CLI in process (click's runner on pipeline_sync.cli.main) against moto: every verb, its output, its exit code.

Every test runs inside mock_aws with PIPELINE_SYNC_BUCKET naming the moto bucket, so the CLI builds its
own store exactly as it would against Front50's bucket. tests/test_cli_e2e.py runs the installed command.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import DEPLOY_DEFAULTS, DEPLOY_TEMPLATE, MakeProject, Project
from s3support import BUCKET, object_keys

from pipeline_sync.cli import main
from pipeline_sync.diff import fleet_signature, semantic_diff
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.plan import Plan, PlanEntry
from pipeline_sync.provenance import MARKER_FIELD
from pipeline_sync.report import COMMENT_LIMIT, plan_markdown
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

# A create reads as the pipeline it writes: a one-line summary, then the unified diff that the
# Dagster UI and the Markdown report show (the raw DeepDiff only with --verbose).
DEV_CREATE = f"""
create: svc/dev/deploy  (digest {{digest}})
  new pipeline 'deploy-dev' in application 'svc': 1 stage (deploy)
  --- live/svc/dev/deploy
  +++ rendered/svc/dev/deploy
  @@ -0,0 +1,13 @@
  +application: svc
  +description: plain
  +id: {DEV_ID}
  +locked:
  +  allowUnlockUi: true
  +  description: 'Managed by pipeline-sync from catalog/services/svc.yaml (svc/dev/deploy). Edit the catalog
  +    or template instead: changes made here show up as drift.'
  +  ui: true
  +name: deploy-dev
  +stages:
  +- account: k8s-dev
  +  refId: deploy
  +  type: deployManifest
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

# What validate (and plan, for pending changes) says of stacks whose approvals are typed names.
UNSIGNED = (
    "note: approvals of stack{s} {stacks} are unsigned (a typed name); declare `approvers:` in "
    "catalog/defaults.yaml to require SSH-signed approvals (README, Signed approvals).\n"
)
BOTH_UNSIGNED = UNSIGNED.format(s="s", stacks="dev, prod")


def test_validate_a_valid_catalog_exits_0(tree: Project) -> None:
    result = cli(tree, "validate")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "2 targets: 2 valid, 0 invalid; 0 catalog files failed\n",
        BOTH_UNSIGNED,
    )


@pytest.mark.parametrize(
    ("template", "services", "stdout", "stderr"),
    [
        (
            INVALID_PROD,
            SERVICES,
            PROD_PROBLEMS,
            BOTH_UNSIGNED + "2 targets: 1 valid, 1 invalid; 0 catalog files failed\n",
        ),
        (
            DEPLOY_TEMPLATE,
            {**SERVICES, "bad": BROKEN_SERVICE},
            "",
            f"error: {BROKEN_ERROR}\n{BOTH_UNSIGNED}2 targets: 2 valid, 0 invalid; 1 catalog file failed\n",
        ),
        (
            INVALID_PROD,
            {**SERVICES, "bad": BROKEN_SERVICE, "worse": BROKEN_SERVICE.replace("bad", "worse")},
            PROD_PROBLEMS,
            f"error: {BROKEN_ERROR}\nerror: {BROKEN_ERROR.replace('bad', 'worse')}\n"
            f"{BOTH_UNSIGNED}2 targets: 1 valid, 1 invalid; 2 catalog files failed\n",
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
        + BOTH_UNSIGNED
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
    assert result.stderr == UNSIGNED.format(s="", stacks="dev")
    saved = Plan.from_json(json.loads(out.read_text()))
    assert [(e.key, e.status, e.digest) for e in saved.entries.values()] == [(DEV, Status.CREATE, digest)]
    assert object_keys(store) == []  # planning writes nothing


def test_plan_json_lists_every_entry_and_select_narrows_it(tree: Project) -> None:
    result = cli(tree, "plan", "--json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"entries", "summary", "warnings", "notes"} and data["warnings"] == []
    assert data["summary"]["counts"] == {"create": 2}
    assert data["summary"]["pending"] == [DEV, PROD]
    fields = {
        "adopt",
        "approvers",
        "diff",
        "digest",
        "drift_fields",
        "drift_kind",
        "key",
        "live_signed_by",
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
    assert result.stderr == f"error: {BROKEN_ERROR}\n{BOTH_UNSIGNED}"
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


UPDATED_TEMPLATE = DEPLOY_TEMPLATE.replace('"k8s-{{ stack }}"', '"k8s-{{ stack }}-2"') + (
    "  - refId: wait\n    type: wait\n"
)


def change_the_fleet(project: Project, tmp_path: Path) -> None:
    """Apply both pipelines, then change the description, one stage's account and add a stage."""
    plan_and_apply(project, tmp_path)
    set_description(project, "fancy")
    (project.templates_dir / "deploy.yaml.j2").write_text(UPDATED_TEMPLATE)


DEV_UPDATE_DIFF = f"""\
--- live/svc/dev/deploy
+++ rendered/svc/dev/deploy
@@ -1,5 +1,5 @@
 application: svc
-description: plain
+description: fancy
 id: {DEV_ID}
 locked:
   allowUnlockUi: true
@@ -8,6 +8,8 @@
   ui: true
 name: deploy-dev
 stages:
-- account: k8s-dev
+- account: k8s-dev-2
   refId: deploy
   type: deployManifest
+- refId: wait
+  type: wait
"""


def test_plan_shows_an_update_as_its_summary_and_the_unified_diff(tree: Project, tmp_path: Path) -> None:
    change_the_fleet(tree, tmp_path)
    digest = digests(tree, "--select", "svc/dev/*")[DEV]
    result = cli(tree, "plan", "--select", "svc/dev/*")
    assert result.exit_code == 2, result.output
    diff = "".join(f"  {line}\n" for line in DEV_UPDATE_DIFF.splitlines())
    assert result.stdout == (
        f"\nupdate: svc/dev/deploy  (digest {digest})\n"
        "  fields changed: description\n"
        "  stages added (refId): wait\n"
        "  stages changed (refId): deploy (account)\n" + diff + "\nSummary: 1 update\n"
    )


def test_plan_verbose_adds_the_raw_deepdiff(tree: Project, tmp_path: Path) -> None:
    change_the_fleet(tree, tmp_path)
    plain = cli(tree, "plan", "--select", "svc/dev/*")
    verbose = cli(tree, "plan", "--select", "svc/dev/*", "--verbose")
    assert "values_changed" not in plain.stdout and "root[" not in plain.stdout
    assert verbose.exit_code == 2
    deepdiff = (
        "  DeepDiff of the documents (stages keyed by refId):\n"
        "    dictionary_item_added:\n"
        "      root['stages']['wait']:\n"
        "        refId: wait\n"
        "        type: wait\n"
        "    values_changed:\n"
        "      root['description']:\n"
        "        new_value: fancy\n"
        "        old_value: plain\n"
        "      root['stages']['deploy']['account']:\n"
        "        new_value: k8s-dev-2\n"
        "        old_value: k8s-dev\n"
    )
    summary = "\nSummary: 1 update\n"
    assert verbose.stdout == plain.stdout.removesuffix(summary) + deepdiff + summary


def test_plan_format_json_is_the_json_flag(tree: Project) -> None:
    flag = cli(tree, "plan", "--json")
    option = cli(tree, "plan", "--format", "json")
    both = cli(tree, "plan", "--json", "--format", "json")
    assert flag.exit_code == option.exit_code == both.exit_code == 2
    assert flag.stdout == option.stdout == both.stdout
    assert json.loads(flag.stdout)["summary"]["counts"] == {"create": 2}


DEV_MARKDOWN = f"""\
## pipeline-sync plan

**2 pipelines**: 2 update.

| status | total | dev | prod |
| --- | ---: | ---: | ---: |
| update | 2 | 1 | 1 |

### 1 distinct change in 2 pipelines

<details>
<summary><b>update</b>: the same change in 2 pipelines (dev: 1, prod: 1), e.g. <code>svc/dev/deploy</code></summary>

- fields changed: description
- stages added (refId): wait
- stages changed (refId): deploy (account)

Pipelines: `svc/dev/deploy`, `svc/prod/deploy`

The diff of `svc/dev/deploy`; the others differ from it only in their names and ids:

```diff
{DEV_UPDATE_DIFF}```

</details>

---

<sub>The full plan is `{{out}}` (`pipeline-sync apply {{out}}` applies exactly it).</sub>
"""


def test_plan_format_markdown_is_one_collapsible_diff_per_distinct_change(
    tree: Project, tmp_path: Path
) -> None:
    change_the_fleet(tree, tmp_path)
    out = tmp_path / "full.json"
    result = cli(tree, "plan", "--format", "markdown", "--out", str(out))
    assert (result.exit_code, result.stderr) == (2, "")
    assert result.stdout == DEV_MARKDOWN.format(out=out)
    assert [e.status for e in Plan.from_json(json.loads(out.read_text())).entries.values()] == [
        Status.UPDATE
    ] * 2


def test_plan_format_markdown_lists_what_needs_a_person_with_the_reason(
    store: S3Store, make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        defaults=DEPLOY_DEFAULTS,
        services={**SERVICES, "bad": BROKEN_SERVICE},
        templates={"deploy": INVALID_PROD},
    )
    squatter = {"id": "by-hand", "application": "svc", "name": "deploy-dev", "stages": []}
    store.put_pipeline("by-hand", json.dumps(squatter).encode(), if_match=None)
    result = cli(project, "plan", "--format", "markdown")
    assert result.exit_code == 1
    attention = result.stdout[result.stdout.index("### Needs a person") :]
    # Markdown that renders each message exactly: backslashes before the punctuation Markdown reads.
    assert attention == (
        "### Needs a person\n"
        "- **catalog error**: catalog/services/bad.yaml:6: tema: unknown key 'tema'; check its spelling "
        "against the catalog reference (keys here: application, email, git\\_repo, name, namespace, product, "
        "prune, stacks, team, vars)\n"
        "- **conflict** `svc/dev/deploy`: another live pipeline (by-hand) already has application 'svc' and "
        "name 'deploy-dev'; rename one of them, or adopt it with \\`pipeline-sync adopt svc 'deploy-dev'\\`\n"
        "- **invalid** `svc/prod/deploy`: \\[svc/prod/deploy\\] stages\\[0\\].requisiteStageRefIds\\[0\\]: "
        "requisite 'nowhere' names no stage of this pipeline; known refIds: 'deploy'; \\[svc/prod/deploy\\] "
        "stages: no stage can start: every stage waits for another in requisiteStageRefIds; give the first "
        "stage requisiteStageRefIds: \\[\\]; catalog/services/svc.yaml: stacks.prod.pipelines lists template "
        "'deploy'; nothing is written for svc/prod/deploy until the problems above are fixed\n"
        "\n---\n\n<sub>Save the full plan with `pipeline-sync plan --out plan.json`.</sub>\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--json", "--format", "markdown"],
        ["plan", "--format", "yaml"],
        ["plan", "--exit-code", "sometimes"],
        ["plan", "--no-such-option"],
        ["no-such-command"],
    ],
)
def test_a_usage_error_exits_1_never_2_which_means_changes_pending(tree: Project, args: list[str]) -> None:
    result = cli(tree, *args)
    assert (result.exit_code, result.stdout) == (1, "")
    assert "Error: " in result.stderr


def test_json_and_markdown_together_is_refused_naming_both(tree: Project) -> None:
    result = cli(tree, "plan", "--json", "--format", "markdown")
    assert result.stderr.endswith(
        "Error: --json is --format json; it cannot be combined with --format markdown.\n"
    )


def in_sync(project: Project, store: S3Store, tmp_path: Path) -> None:
    plan_and_apply(project, tmp_path)


def pending(project: Project, store: S3Store, tmp_path: Path) -> None:
    pass


def squat_dev(store: S3Store) -> None:
    """An unmanaged pipeline with svc/dev/deploy's application and name: a conflict."""
    squatter = {"id": "by-hand", "application": "svc", "name": "deploy-dev", "stages": []}
    store.put_pipeline("by-hand", json.dumps(squatter).encode(), if_match=None)


def conflict_only(project: Project, store: S3Store, tmp_path: Path) -> None:
    plan_and_apply(project, tmp_path, "--select", "svc/prod/*")
    squat_dev(store)


def conflict_and_pending(project: Project, store: S3Store, tmp_path: Path) -> None:
    squat_dev(store)


def invalid_only(project: Project, store: S3Store, tmp_path: Path) -> None:
    plan_and_apply(project, tmp_path)
    (project.templates_dir / "deploy.yaml.j2").write_text(INVALID_PROD)


def broken_file_and_pending(project: Project, store: S3Store, tmp_path: Path) -> None:
    (project.catalog_dir / "services" / "bad.yaml").write_text(BROKEN_SERVICE)


@pytest.mark.parametrize(
    ("arrange", "default", "detailed"),
    [
        (in_sync, 0, 0),
        (pending, 2, 2),
        (conflict_only, 1, 4),
        (conflict_and_pending, 1, 6),
        (invalid_only, 1, 4),
        (broken_file_and_pending, 1, 6),
    ],
)
def test_plan_exit_codes_default_and_detailed(
    store: S3Store, tree: Project, tmp_path: Path, arrange: Any, default: int, detailed: int
) -> None:
    arrange(tree, store, tmp_path)
    assert cli(tree, "plan").exit_code == default
    assert cli(tree, "plan", "--exit-code", "default").exit_code == default
    for output in ("text", "json", "markdown"):
        assert cli(tree, "plan", "--format", output, "--exit-code", "detailed").exit_code == detailed


def test_plan_exits_1_in_every_mode_when_no_plan_was_made(
    tree: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPELINE_SYNC_BUCKET")
    for mode in ("default", "detailed"):
        result = cli(tree, "plan", "--format", "markdown", "--exit-code", mode)
        assert (result.exit_code, result.stdout) == (1, "")


def test_plan_out_that_cannot_be_written_exits_1(tree: Project, tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "plan.json"
    result = cli(tree, "plan", "--out", str(out), "--exit-code", "detailed")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: cannot save the plan to {out}: No such file or directory; nothing was saved.\n"
    )


# -- the Markdown report on its own (plan_markdown over hand-made plans) -------------------------


def update(key: str, *, signature: str, unified: str = "", messages: tuple[str, ...] = ()) -> PlanEntry:
    return PlanEntry(
        key=key,
        status=Status.UPDATE,
        digest="d" * 64,
        stack=key.split("/")[1],
        signature=signature,
        unified=unified,
        messages=messages,
        diff={"values_changed": {"root['description']": {"new_value": "b", "old_value": "a"}}},
    )


def test_markdown_names_the_same_change_in_212_pipelines_once() -> None:
    keys = [f"svc-{n:03}/{'dev' if n < 100 else 'prod'}/deploy" for n in range(212)]
    plan = Plan({k: update(k, signature="one", unified=f"--- live/{k}\n+++ rendered/{k}\n") for k in keys})
    text = plan_markdown(plan)
    assert text.count("<details>") == 1
    assert (
        "<summary><b>update</b>: the same change in 212 pipelines (dev: 100, prod: 112), e.g. "
        "<code>svc-000/dev/deploy</code></summary>"
    ) in text
    shown = ", ".join(f"`{k}`" for k in keys[:20])
    assert f"Pipelines: {shown} and 192 more\n" in text
    assert "- fields changed: description\n" in text
    assert "```diff\n--- live/svc-000/dev/deploy\n+++ rendered/svc-000/dev/deploy\n```" in text


@pytest.mark.parametrize("stack", ["stage", "stag", "age", "nounce", "build-x"])
def test_the_same_change_has_one_signature_when_a_name_is_part_of_a_word(stack: str) -> None:
    live = {"name": "deploy-x", "stages": [{"refId": "build", "type": "wait"}]}
    added = {**live, "stages": [*live["stages"], {"refId": "announce", "type": "wait"}]}
    diff = semantic_diff(live, added)
    assert fleet_signature(diff, ["svc", stack, "deploy"]) == fleet_signature(diff, ["svc", "dev", "deploy"])


def test_markdown_never_exceeds_a_comment_and_points_at_the_full_plan() -> None:
    big = "".join(f"+line {n}: {'x' * 90}\n" for n in range(400))  # about 40,000 characters
    changes = {
        f"s{n}/dev/deploy": update(f"s{n}/dev/deploy", signature=f"c{n}", unified=big) for n in range(40)
    }
    one_line = update("long/dev/deploy", signature="long", unified="+" + "y" * 100_000)
    reason = "another live pipeline already has this name; " * 30
    conflicts = {
        f"c{n}/dev/deploy": PlanEntry(
            key=f"c{n}/dev/deploy", status=Status.CONFLICT, digest="e" * 64, stack="dev", messages=(reason,)
        )
        for n in range(2_000)
    }
    plan = Plan({"long/dev/deploy": one_line, **changes, **conflicts}, warnings=("w " * 500,) * 100)
    for saved_as, pointer in [
        (None, "save the full plan with `pipeline-sync plan --out plan.json`"),
        (
            "out/plan.json",
            "the full plan is `out/plan.json` (`pipeline-sync apply out/plan.json` applies exactly it)",
        ),
    ]:
        text = plan_markdown(
            plan, catalog_errors=["catalog/services/x.yaml:1: broken " * 40] * 50, saved_as=saved_as
        )
        assert len(text) <= COMMENT_LIMIT == 60_000
        assert f"comment: {pointer}._" in text  # changes that did not fit
        assert f"more not shown: {pointer}._" in text  # conflicts that did not fit
        assert text.count("<details>") == text.count("</details>") >= 1
        assert "_The diff is cut after 1 of 1 lines._" in text  # one line longer than a diff may be
        assert re.search(r"_The diff is cut after \d+ of 400 lines\._", text)
        assert text.count("```diff\n") == text.count("<details>")  # every block opens its fence ...
        assert text.count("\n```\n") == text.count("<details>")  # ... and closes it


def test_markdown_escapes_what_live_pipelines_and_values_say() -> None:
    hostile = "x</details><img src=//evil> **bold** [link](http://evil) @team `code` | cell &amp;"
    conflict = PlanEntry(
        key="svc/dev/deploy", status=Status.CONFLICT, digest="e" * 64, stack="dev", messages=(hostile,)
    )
    fenced = "--- live/svc/prod/deploy\n+++ rendered/svc/prod/deploy\n-a: 1\n+a: '```\n+````\n"
    change = update("svc/prod/deploy", signature="s", unified=fenced)
    text = plan_markdown(Plan({conflict.key: conflict, change.key: change}))
    assert text.count("</details>") == 1 and "**bold**" not in text
    assert not re.search(r"(?<!\\)<img", text)  # the one </details> above is the change's own
    assert (
        "- **conflict** `svc/dev/deploy`: x\\</details\\>\\<img src=//evil\\> \\*\\*bold\\*\\* "
        "\\[link\\](http://evil) \\@team \\`code\\` \\| cell \\&amp;\n"
    ) in text
    assert f"`````diff\n{fenced}`````\n" in text  # a fence no backtick run in the diff can close


# -- the command after `source .demo/env.sh` ---------------------------------------------------


def test_the_demos_env_sh_puts_pipeline_sync_on_path(tmp_path: Path) -> None:
    from pipeline_sync import demo

    env_file = demo.write_home_files(tmp_path, demo.demo_env(tmp_path, "http://127.0.0.1:9"))
    script = f"PATH=/usr/bin:/bin; . {shlex.quote(str(env_file))} && command -v pipeline-sync"
    found = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert found.stdout == f"{Path(sys.executable).parent / 'pipeline-sync'}\n"


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
