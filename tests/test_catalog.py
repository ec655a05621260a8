"""Catalog loading: targets, approval, layered variables, pinned ids, and errors with file, line and key."""

from __future__ import annotations

import datetime
import gc
import json
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeline_sync import catalog as catalog_module
from pipeline_sync.catalog import Catalog, load_catalog
from pipeline_sync.merge import deep_merge, merge_layers
from pipeline_sync.render import Renderer
from pipeline_sync.variables import unused_variables
from pipeline_sync.yamlsafe import MAX_DOCUMENT_BYTES, QuotedText

if TYPE_CHECKING:
    from conftest import MakeProject

REPO = Path(__file__).resolve().parent.parent
SERVICE_HEAD = "name: svc\nproduct: shop\nteam: shop-team\nnamespace: shop-ns\ngit_repo: shop-repo\n"  # lines 1-5; a test's own lines start at 6


def only_error(catalog: Catalog) -> str:
    assert catalog.targets == {}, sorted(catalog.targets)
    assert len(catalog.errors) == 1, catalog.errors
    return str(catalog.errors[0])


def service_error(make_project: MakeProject, tmp_path: Path, text: str, **kwargs: Any) -> str:
    return only_error(make_project(tmp_path, services={"svc": text}, **kwargs).load())


# --- targets, approval, variables -------------------------------------------------------------


def test_example_catalog_loads_without_errors() -> None:
    catalog = load_catalog(REPO / "catalog", REPO / "templates")
    assert catalog.errors == [] and catalog.failures == [] and catalog.defaults_error is None
    assert len(catalog.targets) == 13
    assert {"checkout/prod/deploy", "checkout/prod/deploy-canary", "search/stage/deploy"} <= set(
        catalog.targets
    )


def test_one_target_per_listed_template_keyed_service_stack_template(
    make_project: MakeProject, tmp_path: Path
) -> None:
    stacks = {"dev": {"pipelines": ["deploy", "canary"]}, "prod": {"pipelines": ["deploy"]}}
    project = make_project(
        tmp_path,
        services={"svc": {"stacks": stacks}, "other": {}},
        templates={"deploy": "name: d\n", "canary": "name: c\n"},
    )
    targets = project.load().targets
    assert sorted(targets) == ["other/dev/deploy", "svc/dev/canary", "svc/dev/deploy", "svc/prod/deploy"]
    target = targets["svc/dev/canary"]
    assert (target.key, target.service, target.stack, target.template) == (
        "svc/dev/canary",
        "svc",
        "dev",
        "canary",
    )
    assert target.source_file == "catalog/services/svc.yaml"


def test_vars_are_optional_everywhere(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        defaults="stacks:\n  dev: {}\n",
        services={"svc": SERVICE_HEAD + "stacks:\n  dev: {pipelines: [deploy]}\n"},
    )
    context = project.load().targets["svc/dev/deploy"].context
    assert context == {
        "app_name": "svc",
        "product": "shop",
        "team": "shop-team",
        "email": None,
        "namespace": "shop-ns",
        "git_repo": "shop-repo",
        "stack": "dev",
        "template": "deploy",
    }


def test_approval_defaults_to_manual(make_project: MakeProject, tmp_path: Path) -> None:
    assert make_project(tmp_path).load().targets["svc/dev/deploy"].approval == "manual"


def test_approval_auto_on_defaults_stack_propagates_and_service_stack_overrides(
    make_project: MakeProject, tmp_path: Path
) -> None:
    defaults = {"stacks": {"dev": {"approval": "auto"}, "qa": {"approval": "auto"}, "prod": {}}}
    stacks = {
        "dev": {"pipelines": ["deploy"]},
        "qa": {"pipelines": ["deploy"], "approval": "manual"},
        "prod": {"pipelines": ["deploy"], "approval": "auto"},
    }
    targets = make_project(tmp_path, defaults=defaults, services={"svc": {"stacks": stacks}}).load().targets
    assert {key: t.approval for key, t in targets.items()} == {
        "svc/dev/deploy": "auto",
        "svc/qa/deploy": "manual",
        "svc/prod/deploy": "auto",
    }


def test_variables_layer_lowest_first(make_project: MakeProject, tmp_path: Path) -> None:
    defaults = {
        "vars": {"a": "defaults", "b": "defaults", "c": "defaults", "d": "defaults"},
        "stacks": {"dev": {"vars": {"b": "stack", "c": "stack", "d": "stack"}}, "prod": {}},
    }
    service = {
        "vars": {"c": "service", "d": "service"},
        "stacks": {
            "dev": {"pipelines": ["deploy"], "vars": {"d": "service-stack"}},
            "prod": {"pipelines": ["deploy"]},
        },
    }
    targets = make_project(tmp_path, defaults=defaults, services={"svc": service}).load().targets
    dev = targets["svc/dev/deploy"].context
    assert [dev[k] for k in "abcd"] == ["defaults", "stack", "service", "service-stack"]
    prod = targets["svc/prod/deploy"].context
    assert [prod[k] for k in "abcd"] == ["defaults", "defaults", "service", "service"]


def test_maps_merge_deeply_lists_and_scalars_replace(make_project: MakeProject, tmp_path: Path) -> None:
    defaults = {
        "vars": {
            "helm": {"chart": "c", "version": "1", "values": {"branch": "main", "path": "p"}},
            "weights": [10, 50],
            "n": 1,
        },
        "stacks": {"dev": {"vars": {"helm": {"values": {"branch": "dev"}}}}},
    }
    service = {
        "vars": {"helm": {"version": "2"}, "weights": [1], "n": {"now": "a map"}},
        "stacks": {
            "dev": {"pipelines": ["deploy"], "vars": {"helm": {"values": {"path": "q"}}, "weights": []}}
        },
    }
    context = (
        make_project(tmp_path, defaults=defaults, services={"svc": service})
        .load()
        .targets["svc/dev/deploy"]
        .context
    )
    assert context["helm"] == {"chart": "c", "version": "2", "values": {"branch": "dev", "path": "q"}}
    assert context["weights"] == []  # lists replace whole, even with an empty list
    assert context["n"] == {"now": "a map"}  # a scalar replaced by a map


def test_targets_do_not_share_mutable_variables(make_project: MakeProject, tmp_path: Path) -> None:
    defaults = {"vars": {"helm": {"chart": "c"}, "weights": [1, 2]}, "stacks": {"dev": {}, "prod": {}}}
    stacks = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}
    services = {"svc": {"stacks": stacks}, "other": {"stacks": stacks}}
    targets = make_project(tmp_path, defaults=defaults, services=services).load().targets
    dev, prod = targets["svc/dev/deploy"].context, targets["svc/prod/deploy"].context
    assert dev["helm"] is not prod["helm"] and dev["weights"] is not prod["weights"]
    # Each stack's defaults are merged once, then copied for each service: never shared.
    other = targets["other/prod/deploy"].context
    assert other["helm"] is not prod["helm"] and other["weights"] is not prod["weights"]
    assert other["helm"] == prod["helm"] == {"chart": "c"}


def test_merge_functions_do_not_mutate_their_inputs() -> None:
    base = {"m": {"a": 1, "l": [1]}}
    override = {"m": {"b": 2}}
    merged = deep_merge(base, override)
    merged["m"]["l"].append(2)
    assert base == {"m": {"a": 1, "l": [1]}} and override == {"m": {"b": 2}}
    assert merge_layers({"x": 1}, {}, {"x": 2}, {"y": 3}) == {"x": 2, "y": 3}


def test_merged_variables_share_no_mutable_value_with_the_layers() -> None:
    """merge_layers copies plain trees directly and anything else with deepcopy: no list, map or
    set of a layer (however nested, whatever YAML type) may be reachable from the result."""
    when = datetime.date(2001, 12, 14)
    layer = {"l": [{"m": [1]}], "s": {"a"}, "d": when, "b": b"x", "q": QuotedText("3"), "t": (1, [2])}
    merged = merge_layers({"l": "replaced"}, layer, {"extra": {"n": [3]}})
    assert merged == {**layer, "extra": {"n": [3]}}
    assert type(merged["q"]) is QuotedText
    for key in ("l", "s", "t"):
        assert merged[key] is not layer[key]
    assert merged["l"][0] is not layer["l"][0] and merged["l"][0]["m"] is not layer["l"][0]["m"]
    assert merged["t"][1] is not layer["t"][1]


def test_pinned_ids(make_project: MakeProject, tmp_path: Path) -> None:
    stacks = {
        "dev": {"pipelines": ["deploy", "canary"], "ids": {"deploy": "0b7e2d4a-6c1f-4f8e-9d3a-5e2b1c0a9f77"}},
        "prod": {"pipelines": ["deploy"]},
    }
    project = make_project(
        tmp_path,
        services={"svc": {"stacks": stacks}},
        templates={"deploy": "name: d\n", "canary": "name: c\n"},
    )
    targets = project.load().targets
    assert targets["svc/dev/deploy"].pinned_id == "0b7e2d4a-6c1f-4f8e-9d3a-5e2b1c0a9f77"
    assert targets["svc/dev/canary"].pinned_id is None
    assert targets["svc/prod/deploy"].pinned_id is None


def test_prune_defaults_and_service_override(make_project: MakeProject, tmp_path: Path) -> None:
    defaults = {"prune": True, "stacks": {"dev": {}}}
    project = make_project(tmp_path, defaults=defaults, services={"svc": {}, "keep": {"prune": False}})
    catalog = project.load()
    assert catalog.prune is True
    assert catalog.targets["svc/dev/deploy"].prune is True
    assert catalog.targets["keep/dev/deploy"].prune is False


# --- errors name the file, the line and the key path ----------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            "tema: typo\nstacks:\n  dev: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:6: tema: unknown key 'tema'; check its spelling against the catalog reference "
            "(keys here: application, email, git_repo, name, namespace, product, prune, stacks, team, vars)",
        ),
        (
            "stacks:\n  dev:\n    pipelines: [deploy]\n    varz: {a: 1}\n",
            "catalog/services/svc.yaml:9: stacks.dev.varz: unknown key 'varz'",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy]}\nteam: again\n",
            "catalog/services/svc.yaml:8: team: duplicate key 'team' (first defined on line 3); "
            "YAML would silently keep only the last one",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy]}\n  qa: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:8: stacks.qa: stack 'qa' is not declared in catalog/defaults.yaml "
            "(declared: dev, prod)",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy]}\n  prod:\n    pipelines:\n      - deploy\n      - nope\n",
            "catalog/services/svc.yaml:11: stacks.prod.pipelines[1]: template 'nope' does not exist "
            "(templates/nope.yaml.j2); known: deploy",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy, deploy]}\n",
            "catalog/services/svc.yaml:7: stacks.dev.pipelines: a template is listed twice",
        ),
        (
            "vars: {stack: x}\nstacks:\n  dev: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:6: vars: variable 'stack' shadows a name the template context defines; "
            "rename it",
        ),
        (
            "vars: {app_name: x}\nstacks:\n  dev: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:6: vars: variable 'app_name' shadows a name the template context defines",
        ),
        (
            "stacks:\n  dev:\n    pipelines: [deploy]\n    vars: {app_name: x}\n",
            "catalog/services/svc.yaml:9: stacks.dev.vars: variable 'app_name' shadows a name",
        ),
        (
            "vars: {pipeline_id: x}\nstacks:\n  dev: {pipelines: [deploy]}\n",
            "variable 'pipeline_id' shadows a name",
        ),
        (
            "vars: {my-var: x}\nstacks:\n  dev: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:6: vars: variable name 'my-var' is not an identifier",
        ),
        (
            'vars: {"x\\n": 1}\nstacks:\n  dev: {pipelines: [deploy]}\n',
            "variable name 'x\\n' is not an identifier",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy], ids: {other: abc}}\n",
            "catalog/services/svc.yaml:7: stacks.dev.ids.other: pinned id for 'other', which this stack "
            "does not list in `pipelines`",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy], ids: {deploy: ../../x}}\n",
            "catalog/services/svc.yaml:7: stacks.dev.ids: pinned id '../../x' for 'deploy' must be lower-case",
        ),
        (
            'stacks:\n  dev: {pipelines: [deploy], ids: {deploy: "abc\\n"}}\n',
            "pinned id 'abc\\n' for 'deploy' must be lower-case",
        ),
        (
            "stacks:\n  dev: {pipelines: [deploy], approval: sometimes}\n",
            "catalog/services/svc.yaml:7: stacks.dev.approval: Input should be 'auto' or 'manual'",
        ),
        ("stacks: {}\nproduct: again\n", "catalog/services/svc.yaml:7: product: duplicate key 'product'"),
    ],
)
def test_service_errors_name_file_line_and_key(
    make_project: MakeProject, tmp_path: Path, lines: str, expected: str
) -> None:
    assert expected in service_error(make_project, tmp_path, SERVICE_HEAD + lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # the typo at its own line with the key it meant; the "missing" it causes is not counted
            SERVICE_HEAD + "stacks:\n  dev:\n    pipelnes: [deploy]\n",
            "catalog/services/svc.yaml:8: stacks.dev.pipelnes: unknown key 'pipelnes' (did you mean 'pipelines'?)",
        ),
        (
            SERVICE_HEAD.replace("namespace:", "namespce:") + "stacks:\n  dev: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:4: namespce: unknown key 'namespce' (did you mean 'namespace'?)",
        ),
        (  # reported before the missing key, though pydantic lists that first
            SERVICE_HEAD.replace("team: shop-team\n", "")
            + "tema: t\nstacks:\n  dev: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:5: tema: unknown key 'tema' (did you mean 'team'?)",
        ),
        (  # two typos: the first in the file, and one more problem (the missing keys are their doing)
            SERVICE_HEAD.replace("namespace:", "namespce:") + "stacks:\n  dev:\n    pipelnes: [deploy]\n",
            "catalog/services/svc.yaml:4: namespce: unknown key 'namespce' (did you mean 'namespace'?) "
            "(and 1 more problem in this file)",
        ),
        (  # a key the mapping already sets is no suggestion
            SERVICE_HEAD + "teams: x\nstacks:\n  dev: {pipelines: [deploy]}\n",
            "catalog/services/svc.yaml:6: teams: unknown key 'teams'; check its spelling against the catalog "
            "reference (keys here: application, email, git_repo, name, namespace, product, prune, stacks, team, vars)",
        ),
        (
            SERVICE_HEAD + "stacks:\n  dev: {pipelines: [deploy], aproval: auto}\n",
            "catalog/services/svc.yaml:7: stacks.dev.aproval: unknown key 'aproval' (did you mean 'approval'?)",
        ),
        (
            SERVICE_HEAD + "stacks:\n  dev: {pipelines: [deploy], id: {deploy: abc}}\n",
            "catalog/services/svc.yaml:7: stacks.dev.id: unknown key 'id' (did you mean 'ids'?)",
        ),
    ],
    ids=["in-a-stack", "top-level", "before-missing", "two-typos", "already-set", "approval", "ids"],
)
def test_an_unknown_key_is_reported_at_its_line_with_the_key_it_meant(
    make_project: MakeProject, tmp_path: Path, text: str, expected: str
) -> None:
    assert service_error(make_project, tmp_path, text) == expected


def test_a_value_yaml_cannot_construct_fails_only_that_service(
    make_project: MakeProject, tmp_path: Path
) -> None:
    """`!!int 08` is no octal number: PyYAML's constructor raises a ValueError, not a YAML error,
    which must fail that service with its line, not the whole catalog load."""
    broken = (
        SERVICE_HEAD.replace("name: svc", "name: bad")
        + "vars:\n  x: !!int 08\nstacks:\n  dev: {pipelines: [deploy]}\n"
    )
    project = make_project(tmp_path, services={"good": {}, "bad": broken})
    catalog = project.load()
    assert sorted(catalog.targets) == ["good/dev/deploy"]
    assert str(catalog.failures[0].error) == (
        "catalog/services/bad.yaml:7: YAML error: cannot read '08' as !!int "
        "(invalid literal for int() with base 8: '08')"
    )


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        (
            "stacks:\n  dev: {aproval: auto}\n",
            "catalog/defaults.yaml:2: stacks.dev.aproval: unknown key 'aproval' (did you mean 'approval'?)",
        ),
        (
            "prnue: true\nstacks:\n  dev: {}\n",
            "catalog/defaults.yaml:1: prnue: unknown key 'prnue' (did you mean 'prune'?)",
        ),
        (
            "catalog: {idd: x}\nstacks:\n  dev: {}\n",
            "catalog/defaults.yaml:1: catalog.idd: unknown key 'idd' (did you mean 'id'?)",
        ),
        (
            "stacs:\n  dev: {}\n",
            "catalog/defaults.yaml:1: stacs: unknown key 'stacs' (did you mean 'stacks'?)",
        ),
    ],
)
def test_an_unknown_key_in_defaults_is_reported_with_the_key_it_meant(
    make_project: MakeProject, tmp_path: Path, defaults: str, expected: str
) -> None:
    catalog = make_project(tmp_path, defaults=defaults).load()
    assert str(catalog.defaults_error) == expected


def test_missing_required_key(make_project: MakeProject, tmp_path: Path) -> None:
    text = SERVICE_HEAD.replace("team: shop-team\n", "") + "stacks:\n  dev: {pipelines: [deploy]}\n"
    assert service_error(make_project, tmp_path, text) == (
        "catalog/services/svc.yaml:1: team: required key 'team' is missing"
    )


def test_several_problems_are_counted(make_project: MakeProject, tmp_path: Path) -> None:
    text = SERVICE_HEAD + "oops: 1\nalso: 2\nstacks:\n  dev: {pipelines: [deploy]}\n"
    assert service_error(make_project, tmp_path, text).endswith("(and 1 more problem in this file)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- list\n", "catalog/services/svc.yaml:1: expected a mapping at the top level"),
        ("", "catalog/services/svc.yaml:1: expected a mapping at the top level"),
        ("name: svc\nstacks: [\n", "catalog/services/svc.yaml:3: YAML error:"),
        ("name: !!python/object:os.system x\n", "could not determine a constructor"),
    ],
)
def test_unreadable_service_files(
    make_project: MakeProject, tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in service_error(make_project, tmp_path, text)


def test_not_utf8_is_an_error(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project.catalog_dir / "services" / "svc.yaml").write_bytes(b"name: \xff\xfe\n")
    assert only_error(project.load()).startswith("catalog/services/svc.yaml: cannot read file:")


@pytest.mark.parametrize(
    "bad",
    [
        "Svc",
        "svc..x",
        "svc/x",
        "svc.x",
        "-svc",
        "svc-",
        "svc_x",
        "x" * 64,
        "svс",
        "ѕvc",
        "ｓvc",
        "svc\n",
        "",
        " svc",
    ],
)
def test_service_name_must_be_a_dns_label(make_project: MakeProject, tmp_path: Path, bad: str) -> None:
    project = make_project(tmp_path, services={"svc": {"name": bad}})
    message = only_error(project.load())
    assert message.startswith("catalog/services/svc.yaml:1: name: ")
    assert "is not a lower-case DNS label" in message or "is longer than 63 characters" in message


def test_dns_label_of_63_characters_is_fine(make_project: MakeProject, tmp_path: Path) -> None:
    name = "a" * 63
    assert f"{name}/dev/deploy" in make_project(tmp_path, services={name: {}}).load().targets


@pytest.mark.parametrize(
    ("bad", "key_path"),
    [
        ("Prod", "stacks.Prod"),
        ("pr..od", 'stacks["pr..od"]'),
        ("..", 'stacks[".."]'),
        ("pr/od", 'stacks["pr/od"]'),
        ("prоd", 'stacks["prоd"]'),  # Cyrillic о looks like prod; the quotes give it away
        ("ргоd", 'stacks["ргоd"]'),  # Cyrillic р, г and о
        ("dev\n", 'stacks["dev\\n"]'),
        ("p" * 64, "stacks." + "p" * 64),
    ],
)
def test_stack_name_must_be_a_dns_label(
    make_project: MakeProject, tmp_path: Path, bad: str, key_path: str
) -> None:
    project = make_project(tmp_path, defaults={"stacks": {"dev": {}, bad: {}}})
    catalog = project.load()
    assert catalog.targets == {} and catalog.defaults_error is not None
    message = str(catalog.defaults_error)
    assert message.startswith(f"catalog/defaults.yaml:3: {key_path}: ")
    assert "is not a lower-case DNS label" in message or "longer than 63" in message


@pytest.mark.parametrize("bad", ["Deploy", "../deploy", "dеploy", "deploy\n", "de_ploy"])
def test_template_name_must_be_a_dns_label(make_project: MakeProject, tmp_path: Path, bad: str) -> None:
    project = make_project(tmp_path, services={"svc": {"stacks": {"dev": {"pipelines": ["deploy", bad]}}}})
    message = only_error(project.load())
    assert message.startswith("catalog/services/svc.yaml:11: stacks.dev.pipelines[1]: ")
    assert "is not a lower-case DNS label" in message


def test_service_name_must_match_file_name(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(tmp_path, services={"svc": {"name": "other"}})
    assert only_error(project.load()) == (
        "catalog/services/svc.yaml:1: name: service name 'other' must match its file name 'svc.yaml'"
    )


def test_file_name_with_extra_dots_does_not_match(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(tmp_path, services={})
    project.write_service("svc.prod", {"name": "svc"})
    catalog = project.load()
    assert catalog.failed_services == frozenset({"svc.prod"})
    assert "must match its file name 'svc.prod.yaml'" in only_error(catalog)


def test_service_defined_by_two_files_fails_that_service(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(tmp_path, services={"svc": {}, "good": {}})
    (project.catalog_dir / "services" / "svc.yml").write_text(
        (project.catalog_dir / "services" / "svc.yaml").read_text()
    )
    catalog = project.load()
    assert sorted(catalog.targets) == ["good/dev/deploy"]
    assert catalog.failed_services == frozenset({"svc"})
    assert str(catalog.errors[0]) == (
        "catalog/services/svc.yml: service 'svc' is defined by catalog/services/svc.yaml and "
        "catalog/services/svc.yml; keep one file"
    )


def test_yml_files_and_only_yaml_files_are_services(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(tmp_path, services={"svc": {}})
    services = project.catalog_dir / "services"
    (services / "other.yml").write_text(
        (services / "svc.yaml").read_text().replace("name: svc", "name: other")
    )
    (services / "README.md").write_text("not a service\n")
    (services / ".#svc.yaml").write_text("an editor's lock file\n")
    (services / "svc.yaml~").write_text("a backup\n")
    catalog = project.load()
    assert catalog.errors == []
    assert sorted(catalog.targets) == ["other/dev/deploy", "svc/dev/deploy"]


def test_alias_bomb_is_refused_quickly(make_project: MakeProject, tmp_path: Path) -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "\n".join(bomb) + "\n" + SERVICE_HEAD + "stacks:\n  dev: {pipelines: [deploy]}\n"
    started = time.monotonic()
    message = service_error(make_project, tmp_path, text)
    assert time.monotonic() - started < 2
    assert message.startswith("catalog/services/svc.yaml:")
    assert "through YAML aliases; refusing it" in message


def test_huge_document_is_refused(make_project: MakeProject, tmp_path: Path) -> None:
    text = (
        SERVICE_HEAD
        + f"vars: {{blob: '{'x' * MAX_DOCUMENT_BYTES}'}}\nstacks:\n  dev: {{pipelines: [deploy]}}\n"
    )
    assert service_error(make_project, tmp_path, text) == (
        f"catalog/services/svc.yaml: document is larger than {MAX_DOCUMENT_BYTES} bytes"
    )


def test_broken_service_fails_only_that_service(make_project: MakeProject, tmp_path: Path) -> None:
    broken = (
        SERVICE_HEAD.replace("name: svc", "name: bad") + "tema: typo\nstacks:\n  dev: {pipelines: [deploy]}\n"
    )
    project = make_project(tmp_path, services={"good": {}, "bad": broken, "also-good": {}})
    catalog = project.load()
    assert sorted(catalog.targets) == ["also-good/dev/deploy", "good/dev/deploy"]
    assert catalog.failed_services == frozenset({"bad"})
    assert [f.service for f in catalog.failures] == ["bad"]
    assert str(catalog.failures[0].error).startswith("catalog/services/bad.yaml:6: tema: unknown key")
    assert catalog.defaults_error is None


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        (
            "stacks:\n  dev: {}\nsurprise: true\n",
            "catalog/defaults.yaml:3: surprise: unknown key 'surprise'",
        ),
        (
            "stacks:\n  dev: {aproval: auto}\n",
            "catalog/defaults.yaml:2: stacks.dev.aproval: unknown key 'aproval'",
        ),
        ("vars: {}\n", "catalog/defaults.yaml:1: stacks: required key 'stacks' is missing"),
        (
            "vars: {template: x}\nstacks:\n  dev: {}\n",
            "catalog/defaults.yaml:1: vars: variable 'template' shadows a name the template context defines",
        ),
        (
            "stacks:\n  dev: {}\n  dev: {approval: auto}\n",
            "catalog/defaults.yaml:3: stacks.dev: duplicate key 'dev' (first defined on line 2)",
        ),
        ("stacks:\n  dev: {approval: yes}\n", "catalog/defaults.yaml:2: stacks.dev.approval:"),
    ],
)
def test_broken_defaults_fail_everything(
    make_project: MakeProject, tmp_path: Path, defaults: str, expected: str
) -> None:
    catalog = make_project(tmp_path, defaults=defaults, services={"a": {}, "b": {}}).load()
    assert catalog.targets == {} and catalog.failures == []
    assert catalog.errors == [catalog.defaults_error]
    assert expected in str(catalog.defaults_error)


def test_missing_defaults_fail_everything(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project.catalog_dir / "defaults.yaml").unlink()
    catalog = project.load()
    assert catalog.targets == {}
    assert str(catalog.defaults_error) == (
        "catalog/defaults.yaml: catalog defaults file is missing; it must declare at least `stacks:`"
    )


def test_catalog_values_that_look_like_yaml_or_jinja_load_as_strings(
    make_project: MakeProject, tmp_path: Path
) -> None:
    value = "a: b # c {{ d }} {% raw %} - e &f *g !!python/object \"'"
    project = make_project(tmp_path, services={"svc": {"vars": {"x": value}}})
    assert project.load().targets["svc/dev/deploy"].context["x"] == value


# --- application names: the Spinnaker application, mapped to a service ----------------------

APPLICATION_RULE = (
    "(letters, digits, '_', '-' and '.', starting with a letter or digit, no '..', at most 250 characters)"
)


def with_application(value: str) -> str:
    """A service file whose `application:` (line 6) is value, quoted so YAML reads it back exactly."""
    return SERVICE_HEAD + f"application: {json.dumps(value)}\nstacks:\n  dev: {{pipelines: [deploy]}}\n"


@pytest.mark.parametrize(
    "application", ["CHECKOUT", "checkout_api", "Checkout-API2", "a", "9lives", "app.v2", "x" * 250]
)
def test_application_names_spinnaker_accepts(
    make_project: MakeProject, tmp_path: Path, application: str
) -> None:
    catalog = make_project(tmp_path, services={"svc": with_application(application)}).load()
    assert catalog.errors == []
    target = catalog.targets["svc/dev/deploy"]  # the key, file name and partition keep the service name
    assert (target.service, target.application, target.context["app_name"]) == (
        "svc",
        application,
        application,
    )
    assert catalog.application_of("svc") == application
    assert catalog.service_of(application.upper()) == catalog.service_of(application.lower()) == "svc"


@pytest.mark.parametrize(
    ("application", "problem"),
    [
        ("bad/name", f"'bad/name' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("..", f"'..' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("a..b", f"'a..b' is not a Spinnaker application name {APPLICATION_RULE}"),
        (".hidden", f"'.hidden' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("a b", f"'a b' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("", f"'' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("_checkout", f"'_checkout' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("-checkout", f"'-checkout' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("checkout\n", f"'checkout\\n' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("check\x00out", f"'check\\x00out' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("check\\out", f"'check\\\\out' is not a Spinnaker application name {APPLICATION_RULE}"),
        ("сheckout", f"'сheckout' is not a Spinnaker application name {APPLICATION_RULE}"),  # Cyrillic с
        ("İstanbul", f"'İstanbul' is not a Spinnaker application name {APPLICATION_RULE}"),
        (
            "x" * 251,
            "application name 'xxxxxxxxxxxxxxxxxxxx...' is 251 characters long; Deck accepts at most 250",
        ),
    ],
)
def test_application_names_spinnaker_or_a_key_would_refuse(
    make_project: MakeProject, tmp_path: Path, application: str, problem: str
) -> None:
    message = service_error(make_project, tmp_path, with_application(application))
    assert message == f"catalog/services/svc.yaml:6: application: {problem}"


def test_application_must_be_a_string(make_project: MakeProject, tmp_path: Path) -> None:
    text = SERVICE_HEAD + "application: 42\nstacks:\n  dev: {pipelines: [deploy]}\n"
    assert service_error(make_project, tmp_path, text) == (
        "catalog/services/svc.yaml:6: application: Input should be a valid string"
    )


@pytest.mark.parametrize("line", ["", "application: null\n", "application: svc\n"])
def test_application_defaults_to_the_service_name(
    make_project: MakeProject, tmp_path: Path, line: str
) -> None:
    text = SERVICE_HEAD + line + "stacks:\n  dev: {pipelines: [deploy]}\n"
    catalog = make_project(tmp_path, services={"svc": text}).load()
    target = catalog.targets["svc/dev/deploy"]
    assert (target.application, target.context["app_name"], catalog.application_of("svc")) == (
        "svc",
        "svc",
        "svc",
    )


@pytest.mark.parametrize(
    ("first", "second", "first_line", "second_line"),
    [
        ("application: Checkout_API\n", "application: CHECKOUT_API\n", "6: application", "6: application"),
        ("", "application: A\n", "1: name", "6: application"),  # service a's default collides
    ],
)
def test_two_services_of_one_application_both_fail_naming_each_other(
    make_project: MakeProject, tmp_path: Path, first: str, second: str, first_line: str, second_line: str
) -> None:
    stacks = "stacks:\n  dev: {pipelines: [deploy]}\n"
    services = {
        "a": SERVICE_HEAD.replace("name: svc", "name: a") + first + stacks,
        "b": SERVICE_HEAD.replace("name: svc", "name: b") + second + stacks,
        "c": {},
    }
    catalog = make_project(tmp_path, services=services).load()
    assert sorted(catalog.targets) == ["c/dev/deploy"]
    assert catalog.failed_services == frozenset({"a", "b"})
    app_a, app_b = catalog.application_of("a"), catalog.application_of("b")
    rule = (
        "Front50 compares application names case-insensitively, so give each service its own `application:`"
    )
    assert [str(e) for e in catalog.errors] == [
        f"catalog/services/a.yaml:{first_line}: service 'a' has application {app_a!r}, and so does "
        f"catalog/services/b.yaml ({app_b!r}); {rule}",
        f"catalog/services/b.yaml:{second_line}: service 'b' has application {app_b!r}, and so does "
        f"catalog/services/a.yaml ({app_a!r}); {rule}",
    ]
    assert catalog.service_of(app_a) is None  # claimed twice: no service answers for it


def test_a_failed_service_keeps_its_application_when_its_file_said_it(
    make_project: MakeProject, tmp_path: Path
) -> None:
    said = (
        SERVICE_HEAD + "application: Checkout_API\nstacks:\n  qa: {pipelines: [deploy]}\n"
    )  # qa: undeclared
    unreadable = "name: other\nstacks: [\n"
    catalog = make_project(tmp_path, services={"svc": said, "other": unreadable}).load()
    assert catalog.failed_services == frozenset({"svc", "other"})
    assert catalog.application_of("svc") == "Checkout_API"
    assert catalog.service_of("checkout_api") == "svc"
    assert catalog.application_of("other") == "other"  # never said: only the default is known
    assert catalog.service_of("OTHER") == "other"
    assert catalog.service_of("nobody") is None


# --- variables no template reads (validate's warnings) ----------------------------------------


def test_every_variable_setting_names_its_line_and_the_targets_it_reaches(
    make_project: MakeProject, tmp_path: Path
) -> None:
    defaults = "vars: {a: 1}\nstacks:\n  dev: {vars: {b: 2}}\n  prod: {}\n"
    service = (
        SERVICE_HEAD
        + "vars: {c: 3}\nstacks:\n  dev: {pipelines: [deploy]}\n  prod:\n    pipelines: [deploy]\n    vars:\n      d: 4\n"
    )
    lonely = SERVICE_HEAD.replace("name: svc", "name: lonely") + "vars: {e: 5}\nstacks: {}\n"
    broken = SERVICE_HEAD.replace("name: svc", "name: broken") + "vars: {f: 6}\nstacks: {qa: {}}\n"
    services = {"svc": service, "other": {}, "lonely": lonely, "broken": broken}
    catalog = make_project(tmp_path, defaults=defaults, services=services).load()
    assert catalog.failed_services == frozenset({"broken"})  # its variables are not reported
    assert [(s.name, str(s.location), s.keys) for s in catalog.settings] == [
        ("a", "catalog/defaults.yaml:1: vars.a", ("other/dev/deploy", "svc/dev/deploy", "svc/prod/deploy")),
        ("b", "catalog/defaults.yaml:3: stacks.dev.vars.b", ("other/dev/deploy", "svc/dev/deploy")),
        ("e", "catalog/services/lonely.yaml:6: vars.e", ()),  # a service without targets reaches none
        ("c", "catalog/services/svc.yaml:6: vars.c", ("svc/dev/deploy", "svc/prod/deploy")),
        ("d", "catalog/services/svc.yaml:12: stacks.prod.vars.d", ("svc/prod/deploy",)),
    ]


def unused(make_project: MakeProject, tmp_path: Path, templates: dict[str, str], service: str) -> list[str]:
    project = make_project(tmp_path, services={"svc": SERVICE_HEAD + service}, templates=templates)
    catalog = project.load()
    assert catalog.errors == []
    return unused_variables(catalog, Renderer(project.templates_dir, catalog))


DEV_PROD = "stacks:\n  dev: {pipelines: [deploy]}\n  prod: {pipelines: [deploy, canary]}\n"


@pytest.mark.parametrize(
    ("templates", "service", "expected"),
    [
        (  # read by one of the templates it reaches: fine
            {"deploy": "name: d\n", "canary": "name: c\nw: {{ weights }}\n"},
            "vars: {weights: [1]}\n" + DEV_PROD,
            [],
        ),
        (
            {"deploy": "name: d\nr: {{ replicas }}\n", "canary": "name: c\n"},
            "vars: {replica: 3}\n" + DEV_PROD,
            [
                "catalog/services/svc.yaml:6: vars.replica: variable 'replica' is set here, but no template it "
                "reaches (canary, deploy) reads it; did you mean 'replicas'?"
            ],
        ),
        (  # only dev's template reads it, and it is set for prod only
            {"deploy": "name: d\n", "canary": "name: c\n{% if stack == 'dev' %}x: {{ gate }}\n{% endif %}"},
            "stacks:\n  dev: {pipelines: [canary]}\n  prod:\n    pipelines: [deploy]\n    vars: {gate: 1}\n",
            [
                "catalog/services/svc.yaml:10: stacks.prod.vars.gate: variable 'gate' is set here, but no "
                "template it reaches (deploy) reads it; remove it, or use it in a template"
            ],
        ),
        (  # SpEL's ${# is text, not a Jinja comment that would hide {{ gate }}
            {"deploy": "name: d\nx: \"${#judgment('a')} {{ gate }} #}\"\n"},
            "vars: {gate: 1}\nstacks:\n  dev: {pipelines: [deploy]}\n",
            [],
        ),
        (  # a template that sets the name itself never reads the catalog's
            {"deploy": "{% set replicas = 2 %}name: d\nr: {{ replicas }}\n"},
            "vars: {replicas: 3}\nstacks:\n  dev: {pipelines: [deploy]}\n",
            [
                "catalog/services/svc.yaml:6: vars.replicas: variable 'replicas' is set here, but no template it "
                "reaches (deploy) reads it; remove it, or use it in a template"
            ],
        ),
        (  # a template that does not parse is not judged: rendering reports it
            {"deploy": "name: {{ d\n"},
            "vars: {replicas: 3}\nstacks:\n  dev: {pipelines: [deploy]}\n",
            [],
        ),
    ],
    ids=["read-by-one", "typo", "other-stack", "spel", "shadowed", "unparsable"],
)
def test_variables_no_template_reads_are_warned_about(
    make_project: MakeProject, tmp_path: Path, templates: dict[str, str], service: str, expected: list[str]
) -> None:
    assert unused(make_project, tmp_path, templates, service) == expected


def test_the_example_catalog_sets_no_variable_that_no_template_reads() -> None:
    catalog = load_catalog(REPO / "catalog", REPO / "templates")
    assert unused_variables(catalog, Renderer(REPO / "templates", catalog)) == []


@pytest.mark.parametrize(
    ("path", "folder"),
    [
        ("catalog/services/svc.yaml", "catalog"),
        ("/srv/x/catalog/services/svc.yaml", "/srv/x/catalog"),
        ("catalog/../catalog/services/svc.yaml", "catalog"),
        ("services/svc.yaml", "."),
        ("/services/svc.yaml", "/"),
        ("catalogue/svc.yaml", "catalog"),
        ("catalog/defaults.yaml", "catalog/"),
        ("./catalog//services/./svc.yaml", "catalog"),
    ],
)
def test_a_files_name_in_messages_is_what_relative_to_gives(path: str, folder: str) -> None:
    """_relative's string shortcut names every file as Path.relative_to would, or raises as it does."""
    try:
        expected = f"{Path(folder).name}/{Path(path).relative_to(Path(folder)).as_posix()}"
    except ValueError:
        with pytest.raises(ValueError):
            catalog_module._relative(Path(path), Path(folder))
        return
    assert catalog_module._relative(Path(path), Path(folder)) == expected


def test_a_loaded_catalog_keeps_no_service_model_or_line_map(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contexts and variable settings are made when asked for, from what the load kept: not the
    files' models and line maps, which at 30,000 pipelines were tens of MiB."""
    kept: list[weakref.ref[Any]] = []
    real_read = catalog_module._read_service

    def read(*args: Any) -> Any:
        found = real_read(*args)
        kept.extend([weakref.ref(found), weakref.ref(found.service), weakref.ref(found.lines)])
        return found

    monkeypatch.setattr(catalog_module, "_read_service", read)
    stacks = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"], "vars": {"x": 1}}}
    catalog = make_project(tmp_path, services={"a": {"stacks": stacks}, "b": {"stacks": stacks}}).load()
    contexts = [target.context for target in catalog.targets.values()]
    assert len(contexts) == 4 and len(catalog.settings) == 2 and len(kept) == 6
    gc.collect()
    assert [ref() for ref in kept] == [None] * 6
