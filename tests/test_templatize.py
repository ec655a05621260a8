"""`pipeline-sync templatize`: near-duplicate one-off templates become one shared template, renders unchanged."""

from __future__ import annotations

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

from pipeline_sync.templatize import TemplatizeError, is_static, templatize

pytest_plugins = ("front50_schema",)


def near_duplicate(app: str, namespace: str, replicas: int, *, stages: int = 1) -> dict[str, Any]:
    """A hand-made deploy pipeline of app, as teams copy them from each other in Deck."""
    return {
        "id": f"{app}-deploy",
        "application": app,
        "name": "Deploy to Prod",
        "triggers": [
            {"id": f"{app}-trigger", "type": "docker", "repository": f"shop/{app}", "enabled": True}
        ],
        "stages": [
            {
                "refId": str(index + 1),
                "type": "deployManifest",
                "account": "k8s-prod",
                "manifests": [
                    {
                        "kind": "Deployment",
                        "metadata": {"name": app, "namespace": namespace},
                        "spec": {"replicas": replicas, "image": f"shop/{app}:${{trigger['tag']}}"},
                    }
                ],
            }
            for index in range(stages)
        ],
    }


FLEET = [
    near_duplicate("cart", "payments", 2),
    near_duplicate("checkout", "payments", 4),
    near_duplicate("search", "search", 4),
    near_duplicate("ledger", "payments", 2, stages=2),
]
SHARED_KEYS = "cart/imported/cart-deploy-to-prod, checkout/imported/checkout-deploy-to-prod, search/imported/search-deploy-to-prod"


@pytest.fixture(params=STORE_KINDS)
def fleet(request: pytest.FixtureRequest) -> Fleet:
    return open_fleet(request, request.param)


def imported(root: Path, fleet: Fleet, documents: list[dict[str, Any]] = FLEET) -> Project:
    project = empty_project(root)
    for document in documents:
        put_unmanaged(fleet.store, document)
    assert cli(project, fleet, "import").exit_code == 0
    assert {r.outcome for r in apply_all(project, fleet.store)} == {"applied"}
    return project


def test_templatize_shares_one_template_and_the_next_plan_is_in_sync(tmp_path: Path, fleet: Fleet) -> None:
    project = imported(tmp_path / "project", fleet)

    result = cli(project, fleet, "templatize")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"templates/deploy-to-prod.yaml.j2 is shared by 3 pipelines: {SHARED_KEYS}",
        "  trigger_id <- triggers[0].id: service vars",
        "  trigger_repository <- triggers[0].repository: service vars",
        "  manifest_name <- stages[0].manifests[0].metadata.name: service vars",
        "  manifest_namespace <- stages[0].manifests[0].metadata.namespace: defaults vars + service overrides",
        "  manifest_replicas <- stages[0].manifests[0].spec.replicas: defaults vars + service overrides",
        "  manifest_image <- stages[0].manifests[0].spec.image: service vars",
        "not unified: cart/imported/cart-deploy-to-prod and ledger/imported/ledger-deploy-to-prod differ in the "
        "length of stages (1 vs 2): lists of different lengths are not unified",
        "Proved: all 4 targets render byte-identical canonical JSON before and after.",
        "4 pipelines → 2 templates, 6 variables",
    ]
    the_plan = plan_of(project, fleet.store)
    assert {k: str(e.status) for k, e in the_plan.entries.items()} == {
        "cart/imported/cart-deploy-to-prod": "in-sync",
        "checkout/imported/checkout-deploy-to-prod": "in-sync",
        "ledger/imported/ledger-deploy-to-prod": "in-sync",
        "search/imported/search-deploy-to-prod": "in-sync",
    }
    files = sorted(p.name for p in project.templates_dir.iterdir() if not p.is_symlink())
    assert files == ["deploy-to-prod.yaml.j2", "ledger-deploy-to-prod.yaml.j2"]
    link = project.templates_dir / "checkout-deploy-to-prod.yaml.j2"
    assert link.is_symlink() and link.readlink() == Path("deploy-to-prod.yaml.j2")
    shared = (project.templates_dir / "deploy-to-prod.yaml.j2").read_text()
    assert "      namespace: {{ manifest_namespace }}\n" in shared
    assert "      replicas: {{ manifest_replicas }}\n" in shared
    defaults = (project.catalog_dir / "defaults.yaml").read_text()
    assert defaults.startswith("# Stacks of the migrated fleet.\n")  # comments kept
    assert "  manifest_namespace: payments\n" in defaults and "  manifest_replicas: 4\n" in defaults
    search = (project.catalog_dir / "services" / "search.yaml").read_text()
    assert "  manifest_namespace: search\n" in search and "manifest_replicas" not in search
    assert "  manifest_image: shop/search:${trigger['tag']}\n" in search


def test_dry_run_prints_the_changes_and_writes_nothing(tmp_path: Path, store: Any) -> None:
    fleet = Fleet(store, "s3://front50-test/front50")
    project = imported(tmp_path / "project", fleet)
    before = tree(project.root)

    report = templatize(project.catalog_dir, project.templates_dir, dry_run=True)

    assert tree(project.root) == before
    assert report.summary == "4 pipelines → 2 templates, 6 variables"
    assert report.file_diff("templates/checkout-deploy-to-prod.yaml.j2") == (
        "--- a/templates/checkout-deploy-to-prod.yaml.j2\n"
        "+++ b/templates/checkout-deploy-to-prod.yaml.j2 (now a link to the shared template)\n"
    )
    assert "+      namespace: {{ manifest_namespace }}\n" in report.file_diff(
        "templates/deploy-to-prod.yaml.j2"
    )


def test_templatize_refuses_when_any_render_would_change(tmp_path: Path, store: Any) -> None:
    fleet = Fleet(store, "s3://front50-test/front50")
    project = imported(tmp_path / "project", fleet, FLEET[:3])
    # Another team's template reads a variable by the name templatize would pick, with a default.
    (project.templates_dir / "probe.yaml.j2").write_text(
        'name: "probe"\ndescription: "{{ manifest_namespace | default(1) }}"\nstages: []\n'
    )
    project.write_service("probe", {"stacks": {"prod": {"pipelines": ["probe"]}}})
    before = tree(project.root)

    with pytest.raises(TemplatizeError) as refused:
        templatize(project.catalog_dir, project.templates_dir)

    assert str(refused.value) == (
        "templatize refused: 1 target(s) would render differently (probe/prod/probe); every target must "
        "render byte-identical canonical JSON before and after, so nothing was written"
    )
    assert tree(project.root) == before


def test_a_taken_variable_name_is_resolved_visibly(tmp_path: Path, store: Any) -> None:
    fleet = Fleet(store, "s3://front50-test/front50")
    project = imported(tmp_path / "project", fleet, FLEET[:2])
    defaults = project.catalog_dir / "defaults.yaml"
    defaults.write_text(defaults.read_text() + "vars:\n  manifest_name: unrelated\n")

    report = templatize(project.catalog_dir, project.templates_dir)

    [group] = report.groups
    names = {v.path: (v.name, v.renamed_from) for v in group.variables}
    assert names["stages[0].manifests[0].metadata.name"] == ("manifest_name_2", "manifest_name")
    assert plan_of(project, store).counts() == {"in-sync": 2}


@pytest.mark.parametrize(("threshold", "templates"), [(0.5, 1), (0.2, 2)])
def test_the_difference_threshold_decides_what_shares_a_template(
    tmp_path: Path, store: Any, threshold: float, templates: int
) -> None:
    fleet = Fleet(store, "s3://front50-test/front50")
    project = imported(tmp_path / "project", fleet, FLEET[:2])  # 5 of 13 leaves differ

    report = templatize(project.catalog_dir, project.templates_dir, max_difference=threshold, dry_run=True)

    assert report.templates_after == templates


@pytest.mark.parametrize(
    ("source", "static"),
    [
        ("name: x\n", True),
        ('name: "{% raw %}{{ x }}{% endraw %}"\n', True),
        ("name: \"{{ '{' }}{ x }}\"\n", True),
        ("name: ${#stage('x')}\n", True),
        ("name: {{ app_name }}\n", False),
        ("{% if x %}name: x{% endif %}\n", False),
        ("name: \"{{ '}' }}\"\n", False),
    ],
)
def test_only_static_templates_are_one_offs(source: str, static: bool) -> None:
    assert is_static(source) is static


def test_values_a_stack_shares_go_to_that_stacks_vars(tmp_path: Path, store: Any) -> None:
    fleet = Fleet(store, "s3://front50-test/front50")
    project = empty_project(tmp_path / "project")
    for app, replicas in (("cart", 4), ("checkout", 4), ("search", 1), ("ledger", 1)):
        put_unmanaged(store, near_duplicate(app, app, replicas))
    assert cli(project, fleet, "import", "--select", "c*", "--stack", "prod").exit_code == 0
    assert cli(project, fleet, "import", "--select", "[ls]*").exit_code == 0
    assert {r.outcome for r in apply_all(project, store)} == {"applied"}

    report = templatize(project.catalog_dir, project.templates_dir)

    [group] = report.groups
    placements = {v.name: v.placement for v in group.variables}
    assert placements["manifest_replicas"] == "stack vars"
    defaults = (project.catalog_dir / "defaults.yaml").read_text()
    assert "  prod: {vars: {manifest_replicas: 4}} # people approve\n" in defaults
    assert "  imported: {vars: {manifest_replicas: 1}}\n" in defaults
    assert plan_of(project, store).counts() == {"in-sync": 4}


@pytest.mark.parametrize(
    "texts", [("yes", "no"), ("2020-01-01", "1e3"), ("null", "~"), ("{{ x }}", "${#stage('a')}")]
)
def test_string_values_stay_strings_in_the_catalog(
    tmp_path: Path, store: Any, texts: tuple[str, str]
) -> None:
    fleet = Fleet(store, "s3://front50-test/front50")
    documents = [
        {**near_duplicate(app, app, 1), "description": text}
        for app, text in zip(("cart", "ledger"), texts, strict=True)
    ]
    project = imported(tmp_path / "project", fleet, documents)

    report = templatize(project.catalog_dir, project.templates_dir)

    assert report.templates_after == 1
    assert plan_of(project, store).counts() == {"in-sync": 2}
