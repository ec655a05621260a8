"""`pipeline-sync import`: unmanaged live pipelines become templates and pinned targets; plan adopts them only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Project
from fleetsupport import (
    STORE_KINDS,
    Fleet,
    apply_all,
    cli,
    empty_project,
    open_fleet,
    plan_of,
    put_unmanaged,
    tree,
)

from pipeline_sync import engine
from pipeline_sync.canonical import canonical_json
from pipeline_sync.engine import AUTO_APPROVER
from pipeline_sync.importer import import_pipelines, safe_label, template_document
from pipeline_sync.provenance import MARKER_FIELD, normalise
from pipeline_sync.rendering import Sources
from pipeline_sync.status import Status
from pipeline_sync.template_text import escape

pytest_plugins = ("front50_schema",)

CHECKOUT = {
    "id": "0f3b5c8e-1d2a-4c6e-9f70-123456789abc",
    "application": "checkout",
    "name": "Deploy to Prod",
    "index": 2,
    "keepWaitingPipelines": False,
    "limitConcurrent": True,
    "parameterConfig": [{"name": "tag", "default": "latest", "required": True}],
    "triggers": [{"id": "7d0e", "type": "docker", "enabled": True, "repository": "shop/checkout"}],
    "stages": [
        {
            "refId": "1",
            "type": "deployManifest",
            "name": "Deploy",
            "account": "k8s-prod",
            "source": "text",
            "manifests": [
                {
                    "kind": "Deployment",
                    "metadata": {"name": "checkout", "namespace": "payments"},
                    "spec": {"replicas": 4, "image": "${trigger['tag'] ?: parameters['tag']}"},
                }
            ],
            "requisiteStageRefIds": [],
        },
        {
            "refId": "2",
            "type": "wait",
            "name": "Settle",
            "waitTime": 300,
            "requisiteStageRefIds": ["1"],
        },
    ],
    "updateTs": "1700000000000",
    "lastModifiedBy": "bob@example.com",
}
# Helm's templating inside an inline manifest, and SpEL in each of its spellings.
HELM = {
    "id": "legacy-search-1",
    "application": "Search_API",
    "name": "bake {{ chart }} for prod",
    "description": "Helm: {{ .Values.image }} {%- if x %}{# note #}",
    "stages": [
        {
            "refId": "bake",
            "type": "bakeManifest",
            "templateRenderer": "HELM3",
            "overrides": {"image.tag": "${#stage('Build')['context']['tag']}", "{{ key }}": "${{x}}"},
            "notes": "literally {% endraw %} and {{ '{' }}",
        }
    ],
}


@pytest.fixture(params=STORE_KINDS)
def fleet(request: pytest.FixtureRequest) -> Fleet:
    return open_fleet(request, request.param)


@pytest.fixture
def migrating(tmp_path: Path) -> Project:
    return empty_project(tmp_path / "project")


def without_lock(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in normalise(document).items() if k != "locked"}


# -- import, plan, apply ------------------------------------------------------------------------


def test_import_plans_adoptions_whose_only_change_is_the_lock_and_apply_takes_them_over(
    migrating: Project, fleet: Fleet
) -> None:
    put_unmanaged(fleet.store, CHECKOUT)
    put_unmanaged(fleet.store, HELM)

    result = cli(migrating, fleet, "import")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Imported Search_API/bake {{ chart }} for prod (legacy-search-1) as "
        "search-api/imported/search-api-bake-chart-for-prod: templates/search-api-bake-chart-for-prod.yaml.j2",
        "Imported checkout/Deploy to Prod (0f3b5c8e-1d2a-4c6e-9f70-123456789abc) as "
        "checkout/imported/checkout-deploy-to-prod: templates/checkout-deploy-to-prod.yaml.j2",
        "Declared stack 'imported' in catalog/defaults.yaml (approval: manual).",
        "2 imported, 0 skipped",
        "Next: `pipeline-sync plan --out plan.json` shows each as an adoption whose only change is "
        "pipeline-sync's lock and marker; a person approves it with `pipeline-sync apply plan.json`.",
    ]
    the_plan = plan_of(migrating, fleet.store)
    assert {k: (str(e.status), e.adopt) for k, e in the_plan.entries.items()} == {
        "checkout/imported/checkout-deploy-to-prod": ("update", True),
        "search-api/imported/search-api-bake-chart-for-prod": ("update", True),
    }
    for entry in the_plan.entries.values():
        assert entry.desired is not None
        live = fleet.store.read_pipeline(str(entry.pipeline_id))
        assert live is not None and live.document is not None
        assert without_lock(dict(entry.desired)) == without_lock(live.document)
        changed = [
            line for line in entry.unified.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
        ]
        assert changed[0] == "+locked:"
        assert entry.desired["index" if entry.key.startswith("checkout") else "name"] == live.document.get(
            "index" if entry.key.startswith("checkout") else "name"
        )

    workspace = Sources.load(migrating.catalog_dir, migrating.templates_dir)
    approved = {k: e.digest for k, e in the_plan.entries.items()}
    by_policy = engine.apply(workspace, fleet.store, approved, approver=AUTO_APPROVER, policy=True)
    assert {r.outcome for r in by_policy} == {"refused"}
    assert by_policy[0].message == (
        "checkout/imported/checkout-deploy-to-prod: stack policy cannot approve this update (an adoption): "
        "adoptions, drift, deletes and rollbacks always need a person, and policy covers only stacks "
        "with `approval: auto`"
    )

    assert [r.outcome for r in apply_all(migrating, fleet.store)] == ["applied", "applied"]
    after = plan_of(migrating, fleet.store)
    assert {str(e.status) for e in after.entries.values()} == {"in-sync"}
    live = fleet.store.read_pipeline(HELM["id"])
    assert live is not None and live.document is not None
    assert live.document[MARKER_FIELD]["key"] == "search-api/imported/search-api-bake-chart-for-prod"
    assert without_lock(live.document) == without_lock(HELM)


def test_the_service_file_is_created_from_front50s_application_object(
    migrating: Project, fleet: Fleet
) -> None:
    fleet.store.ensure_application("checkout", "payments@example.com")
    put_unmanaged(fleet.store, CHECKOUT)

    assert cli(migrating, fleet, "import").exit_code == 0

    assert (migrating.catalog_dir / "services" / "checkout.yaml").read_text() == (
        "# Created by `pipeline-sync import` for Spinnaker application checkout (email from its Front50 "
        "application object).\n"
        "# Fill in product, team, namespace and git_repo when templates start to use them.\n"
        "name: checkout\n"
        "product: ''\n"
        "team: ''\n"
        "namespace: ''\n"
        "git_repo: ''\n"
        "email: payments@example.com\n"
        "stacks:\n"
        "  imported: {pipelines: [checkout-deploy-to-prod], ids: {checkout-deploy-to-prod: "
        "0f3b5c8e-1d2a-4c6e-9f70-123456789abc}}\n"
    )


# -- Jinja-looking text survives byte-identically -----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ .Values.image.tag }}",
        "{% if x %}y{% endif %}",
        "{# not a comment #}",
        "${#stage('Bake')['context']['artifacts']}",
        "${{ 'a': 1 }['a']}",
        "{%- endraw -%} then {{ x }}",
        "endraw {{{{ x }}}}",
        "{{ '{' }}",
        'quotes " and \\ backslash {{ x }}',
        "line one {{ a }}\nline two {%b%}\n",
        "\u2028 separator {{ u }} \x85 next line \ufeff",
        "${ {'a': 1}['a'] } and ${#judgment('x')}",
        "  padded {# #}  ",
        "#!/bin/sh\nset -e\n  indented: yes\n\ttab # not a comment\n\n",
        "trailing space \nand a \r carriage return, ${#ARGS[@]} and 'quotes'",
        "- not a list\n? not a key\n",
    ],
)
def test_jinja_looking_strings_render_back_byte_identically(tmp_path: Path, store: Any, text: str) -> None:
    project = empty_project(tmp_path / "project")
    document = {
        "id": "pipe-1",
        "application": "app",
        "name": "deploy",
        "description": text,
        "stages": [{"refId": "1", "type": "wait", "notes": {text: text}}],
    }
    put_unmanaged(store, document)

    report = import_pipelines(project.catalog_dir, project.templates_dir, store)

    assert [i.key for i in report.imported] == ["app/imported/app-deploy"], report.skipped
    catalog = Sources.load(project.catalog_dir, project.templates_dir)
    rendered = catalog.renderer.render(catalog.catalog.targets["app/imported/app-deploy"])
    assert rendered.canonical == canonical_json(document)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("${#stage('x')}", "${#stage('x')}"),
        ("${trigger['tag']}", "${trigger['tag']}"),
        ("{{ x }}", "{% raw %}{{ x }}{% endraw %}"),
        ("{% endraw %}{{ x }}", "{{ '{' }}% endraw %}{{ '{' }}{ x }}"),
        ("a {# b", "{% raw %}a {# b{% endraw %}"),
    ],
)
def test_spel_is_kept_verbatim_and_only_jinja_openings_are_escaped(text: str, escaped: str) -> None:
    assert escape(text) == escaped


# -- nothing existing is overwritten ------------------------------------------------------------


def test_an_existing_template_file_is_never_overwritten(migrating: Project, fleet: Fleet) -> None:
    put_unmanaged(fleet.store, CHECKOUT)
    existing = migrating.templates_dir / "checkout-deploy-to-prod.yaml.j2"
    existing.write_text("name: mine\n")
    before = tree(migrating.root)

    result = cli(migrating, fleet, "import")

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "skipped checkout/Deploy to Prod (0f3b5c8e-1d2a-4c6e-9f70-123456789abc): "
        "templates/checkout-deploy-to-prod.yaml.j2 already exists; it is never overwritten "
        "(rename or remove it first)"
    ]
    assert tree(migrating.root) == before


def test_a_service_file_of_another_application_is_never_overwritten(migrating: Project, fleet: Fleet) -> None:
    put_unmanaged(fleet.store, CHECKOUT)
    put_unmanaged(fleet.store, {**CHECKOUT, "id": "check-1", "application": "check-out"})
    put_unmanaged(fleet.store, {**CHECKOUT, "id": "check-2", "application": "check_out"})
    existing = migrating.write_service("checkout", {"application": "Checkout_Legacy", "stacks": {}})
    before = existing.read_text()

    result = cli(migrating, fleet, "import")

    assert result.exit_code == 0, result.output
    assert existing.read_text() == before
    services = sorted(p.name for p in (migrating.catalog_dir / "services").iterdir())
    assert services == ["check-out-e218e9.yaml", "check-out.yaml", "checkout-c7761e.yaml", "checkout.yaml"]
    assert (
        "application: check_out\n"
        in (migrating.catalog_dir / "services" / "check-out-e218e9.yaml").read_text()
    )


def test_an_existing_service_keeps_its_comments_and_layout(migrating: Project, fleet: Fleet) -> None:
    put_unmanaged(fleet.store, CHECKOUT)
    original = (
        "# Payments' checkout service.\n"
        "name: checkout\n"
        "product: shop   # the shop product line\n"
        "team: shop-payments\n"
        "email: payments@example.com\n"
        "namespace: payments\n"
        "git_repo: checkout-service\n"
        "stacks:\n"
        "  prod:\n"
        "    pipelines: []  # none yet\n"
    )
    migrating.write_service("checkout", original)

    assert cli(migrating, fleet, "import", "--stack", "prod").exit_code == 0

    assert (migrating.catalog_dir / "services" / "checkout.yaml").read_text() == original.replace(
        "    pipelines: []  # none yet\n",
        "    pipelines: [checkout-deploy-to-prod] # none yet\n"
        "    ids: {checkout-deploy-to-prod: 0f3b5c8e-1d2a-4c6e-9f70-123456789abc}\n",
    )
    assert "imported" not in (migrating.catalog_dir / "defaults.yaml").read_text()


def test_dry_run_prints_every_file_and_writes_nothing(migrating: Project, fleet: Fleet) -> None:
    put_unmanaged(fleet.store, CHECKOUT)
    before = tree(migrating.root)

    result = cli(migrating, fleet, "import", "--dry-run", "--select", "checkout/*")

    assert result.exit_code == 0, result.output
    assert tree(migrating.root) == before
    assert "+++ b/templates/checkout-deploy-to-prod.yaml.j2" in result.output
    assert "+      image: \"${trigger['tag'] ?: parameters['tag']}\"" in result.output
    assert "+  imported: {}" in result.output
    assert result.output.splitlines()[-1] == "1 imported, 0 skipped (dry run: nothing written)"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            {
                **CHECKOUT,
                "expectedArtifacts": [{"displayName": "image", "matchArtifact": {"type": "docker/image"}}],
            },
            "its template would not render it unchanged (it would change expectedArtifacts; pipeline-sync gives "
            "expected artifacts without an id one): left alone",
        ),
        (
            {**CHECKOUT, MARKER_FIELD: {"key": "checkout/prod/deploy", "renderDigest": "x"}},
            "it carries a pipeline-sync marker naming 'checkout/prod/deploy' that does not hold up (a copy "
            "made in Deck, or a marker written by hand); remove the marker in Deck to import it",
        ),
        (
            {**CHECKOUT, "id": "pipe.1"},
            "its id 'pipe.1' cannot be pinned (lower-case letters, digits, '-' or '_', at most 128)",
        ),
    ],
)
def test_pipelines_that_cannot_be_imported_unchanged_are_skipped_with_the_reason(
    tmp_path: Path, store: Any, document: dict[str, Any], reason: str
) -> None:
    project = empty_project(tmp_path / "project")
    store.put_pipeline(document["id"], json.dumps(document).encode(), if_match=None)
    before = tree(project.root)

    report = import_pipelines(project.catalog_dir, project.templates_dir, store)

    assert [s.reason for s in report.skipped] == [reason]
    assert report.imported == ()
    assert tree(project.root) == before


def test_a_second_import_finds_nothing_left_to_import(migrating: Project, fleet: Fleet) -> None:
    put_unmanaged(fleet.store, CHECKOUT)
    assert cli(migrating, fleet, "import").exit_code == 0
    before = tree(migrating.root)

    again = cli(migrating, fleet, "import")

    assert again.exit_code == 1
    assert again.stderr.splitlines() == [
        "skipped checkout/Deploy to Prod (0f3b5c8e-1d2a-4c6e-9f70-123456789abc): its id is already pinned "
        "in the catalog for checkout/imported/checkout-deploy-to-prod: run `pipeline-sync plan --select "
        "checkout/imported/checkout-deploy-to-prod`"
    ]
    assert tree(migrating.root) == before
    assert [r.outcome for r in apply_all(migrating, fleet.store)] == ["applied"]
    assert cli(migrating, fleet, "import").output.splitlines() == ["0 imported, 0 skipped"]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("checkout-Deploy to Prod", "checkout-deploy-to-prod"),
        ("Search_API-bake {{ chart }} / prod", "search-api-bake-chart-prod"),
        ("---", "pipeline-cb3f91"),
        ("a" * 80, "a" * 56 + "-" + "0f45e8"),
    ],
)
def test_template_names_are_safe_labels(text: str, label: str) -> None:
    assert safe_label(text, fallback="pipeline") == label


def test_the_template_leaves_id_application_lock_and_server_fields_to_others() -> None:
    assert list(template_document({**CHECKOUT, "locked": {"ui": True}, "createdAt": 1})) == [
        "name",
        "keepWaitingPipelines",
        "limitConcurrent",
        "parameterConfig",
        "triggers",
        "stages",
    ]
    assert Status.UPDATE  # the adoption status the plan above shows


# -- bulk adopt -----------------------------------------------------------------------------------


def test_adopt_a_glob_reports_each_pipeline_pinned_refused_or_skipped(project: Path, fleet: Fleet) -> None:
    example = Project(project)
    legacy = {"limitConcurrent": False, "stages": [{"refId": "1", "type": "wait", "waitTime": 30}]}
    put_unmanaged(
        fleet.store, {"id": "legacy-dev", "application": "checkout", "name": "deploy-dev", **legacy}
    )
    put_unmanaged(
        fleet.store, {"id": "legacy-prod", "application": "checkout", "name": "Deploy-Prod", **legacy}
    )
    put_unmanaged(fleet.store, {"id": "by-hand", "application": "checkout", "name": "by-hand", **legacy})
    put_unmanaged(fleet.store, {"id": "other-app", "application": "search", "name": "deploy-prod", **legacy})
    copied = {"id": "a-copy", "application": "checkout", "name": "deploy-qa", MARKER_FIELD: {"key": "x/y/z"}}
    put_unmanaged(fleet.store, {**copied, **legacy})

    result = cli(example, fleet, "adopt", "checkout/*")

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "pinned: checkout/deploy-dev (legacy-dev) as checkout/dev/deploy: pinned in "
        f"{example.catalog_dir}/services/checkout.yaml: stacks.dev.ids.deploy",
        "pinned: checkout/Deploy-Prod (legacy-prod) as checkout/prod/deploy: pinned in "
        f"{example.catalog_dir}/services/checkout.yaml: stacks.prod.ids.deploy",
        "skipped: checkout/deploy-qa (a-copy): already carries a pipeline-sync marker (x/y/z); not adopted again",
        "2 pinned, 1 refused, 1 skipped",
        "Next: commit the catalog change, then `pipeline-sync plan --out plan.json` (updates that adopt them, "
        "same ids; a person approves each) and `pipeline-sync apply plan.json`.",
    ]
    assert result.stderr.splitlines() == [
        "refused: checkout/by-hand (by-hand): cannot tell which catalog target pipeline 'by-hand' of 'checkout' "
        "is: no target of service 'checkout' renders that name (checkout/dev/deploy -> 'deploy-dev', "
        "checkout/prod/deploy -> 'deploy-prod', checkout/prod/deploy-canary -> 'deploy-canary-prod', "
        "checkout/qa/deploy -> 'deploy-qa', checkout/stage/deploy -> 'deploy-stage'). Make exactly one "
        "template render it, then adopt."
    ]
    entries = plan_of(example, fleet.store, ["checkout/dev/deploy", "checkout/prod/deploy"]).entries
    assert {k: (str(e.status), e.adopt, e.pipeline_id) for k, e in entries.items()} == {
        "checkout/dev/deploy": ("update", True, "legacy-dev"),
        "checkout/prod/deploy": ("update", True, "legacy-prod"),
    }


@pytest.mark.parametrize(
    "args",
    [("--all", "checkout/*"), ()],
)
def test_adopt_needs_one_way_of_naming_pipelines(project: Path, fleet: Fleet, args: tuple[str, ...]) -> None:
    result = cli(Project(project), fleet, "adopt", *args)
    assert result.exit_code == 1
    assert "adopt takes APPLICATION NAME, a glob over APPLICATION/NAME, or --all." in result.output


def test_a_trigger_without_an_id_is_kept_without_one(migrating: Project, fleet: Fleet) -> None:
    triggers = [
        {"type": "jenkins", "master": "ci", "job": "build", "enabled": True},
        {"type": "git", "id": ""},
    ]
    put_unmanaged(fleet.store, {**CHECKOUT, "triggers": triggers})

    assert cli(migrating, fleet, "import").exit_code == 0

    template = (migrating.templates_dir / "checkout-deploy-to-prod.yaml.j2").read_text()
    assert "  pipelineSyncNoId: true\n" in template
    [entry] = plan_of(migrating, fleet.store).entries.values()
    assert entry.desired is not None and entry.desired["triggers"] == triggers
    assert [r.outcome for r in apply_all(migrating, fleet.store)] == ["applied"]
    assert {str(e.status) for e in plan_of(migrating, fleet.store).entries.values()} == {"in-sync"}


def test_a_pipeline_a_catalog_target_renders_already_is_left_to_adopt(project: Path, fleet: Fleet) -> None:
    example = Project(project)
    put_unmanaged(
        fleet.store, {"id": "legacy-prod", "application": "checkout", "name": "Deploy-Prod", "stages": []}
    )
    before = tree(example.root)

    result = cli(example, fleet, "import")

    assert (result.exit_code, result.stderr.splitlines()) == (
        1,
        [
            "skipped checkout/Deploy-Prod (legacy-prod): catalog target checkout/prod/deploy renders this "
            'application and name already: take it over in place with `pipeline-sync adopt checkout "Deploy-Prod"`'
        ],
    )
    assert tree(example.root) == before


def test_a_pipeline_whose_application_the_catalog_spells_differently_is_skipped(
    project: Path, store: Any
) -> None:
    put_unmanaged(store, {**CHECKOUT, "application": "Checkout"})
    before = tree(project)

    report = import_pipelines(project / "catalog", project / "templates", store)

    assert [s.reason for s in report.skipped] == [
        "its template would not render it unchanged (it would change application; the catalog spells the "
        "application differently): left alone"
    ]
    assert tree(project) == before
