"""Catalog loading: targets, layering, approval, pinned ids, and every error with file, key and line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from s3support import MINIMAL_DEFAULTS, PROJECT, service_yaml, write_project

from pipeline_sync.catalog import load_catalog
from pipeline_sync.yamlsafe import MAX_DOCUMENT_BYTES


def load(root: Path):  # type: ignore[no-untyped-def]
    return load_catalog(root / "catalog", root / "templates")


def only_error(root: Path) -> str:
    catalog = load(root)
    assert len(catalog.errors) == 1, catalog.errors
    return str(catalog.errors[0])


def test_example_catalog_loads_thirteen_targets() -> None:
    catalog = load_catalog(PROJECT / "catalog", PROJECT / "templates")
    assert catalog.errors == []
    assert len(catalog.targets) == 13
    assert "checkout/prod/deploy-canary" in catalog.targets


def test_one_target_per_listed_template_keyed_service_stack_template(tmp_path: Path) -> None:
    stacks = "  dev: {pipelines: [deploy, other]}\n  prod: {pipelines: [deploy]}\n"
    root = write_project(
        tmp_path,
        services={"svc": service_yaml(stacks=stacks)},
        templates={"deploy": "name: a\n", "other": "name: b\n"},
    )
    assert sorted(load(root).targets) == ["svc/dev/deploy", "svc/dev/other", "svc/prod/deploy"]


def test_vars_are_optional_and_approval_defaults_to_manual(tmp_path: Path) -> None:
    root = write_project(tmp_path, defaults="stacks:\n  dev: {}\n")
    target = load(root).targets["svc/dev/deploy"]
    assert target.approval == "manual"
    assert target.context["app_name"] == "svc" and target.context["stack"] == "dev"


def test_approval_auto_from_stack_and_service_override(tmp_path: Path) -> None:
    stacks = "  dev: {pipelines: [deploy]}\n  prod: {pipelines: [deploy], approval: auto}\n"
    root = write_project(tmp_path, services={"svc": service_yaml(stacks=stacks)})
    targets = load(root).targets
    assert targets["svc/dev/deploy"].approval == "auto"  # from defaults.stacks.dev
    assert targets["svc/prod/deploy"].approval == "auto"  # service-stack override


def test_variables_layer_and_deep_merge(tmp_path: Path) -> None:
    defaults = (
        "vars: {a: 1, b: 1, c: 1, d: 1, m: {x: 1, y: 1, z: 1}, l: [1, 2]}\n"
        "stacks:\n  dev: {vars: {b: 2, c: 2, d: 2, m: {y: 2}}}\n"
    )
    service = service_yaml(
        extra="vars: {c: 3, d: 3, m: {z: 3}, l: [9]}\n",
        stacks="  dev: {pipelines: [deploy], vars: {d: 4, m: {x: 4}}}\n",
    )
    root = write_project(tmp_path, defaults=defaults, services={"svc": service})
    context = load(root).targets["svc/dev/deploy"].context
    assert (context["a"], context["b"], context["c"], context["d"]) == (1, 2, 3, 4)
    assert context["m"] == {"x": 4, "y": 2, "z": 3}  # maps merge deeply
    assert context["l"] == [9]  # lists replace


def test_pinned_id(tmp_path: Path) -> None:
    stacks = "  dev:\n    pipelines: [deploy]\n    ids: {deploy: 0b7e2d4a-6c1f-4f8e-9d3a-5e2b1c0a9f77}\n"
    root = write_project(tmp_path, services={"svc": service_yaml(stacks=stacks)})
    assert load(root).targets["svc/dev/deploy"].pinned_id == "0b7e2d4a-6c1f-4f8e-9d3a-5e2b1c0a9f77"


@pytest.mark.parametrize(
    ("service_text", "expected"),
    [
        (
            service_yaml(extra="tema: typo\n"),
            "catalog/services/svc.yaml:6: tema: unknown key 'tema'; check its spelling",
        ),
        (
            service_yaml(stacks="  dev: {pipelines: [deploy], varz: {}}\n"),
            "catalog/services/svc.yaml:7: stacks.dev.varz: unknown key 'varz'",
        ),
        (
            service_yaml(extra="team: again\n"),
            "catalog/services/svc.yaml:6: team: duplicate key 'team' (first defined on line 3)",
        ),
        (
            service_yaml(stacks="  qa: {pipelines: [deploy]}\n"),
            "catalog/services/svc.yaml:7: stacks.qa: stack 'qa' is not declared in catalog/defaults.yaml "
            "(declared: dev, prod)",
        ),
        (
            service_yaml(stacks="  dev: {pipelines: [deploy, nope]}\n"),
            "catalog/services/svc.yaml:7: stacks.dev.pipelines[1]: template 'nope' does not exist "
            "(templates/nope.yaml.j2); known: deploy",
        ),
        (
            service_yaml(extra="vars: {stack: x}\n"),
            "catalog/services/svc.yaml:6: vars: variable 'stack' shadows a name the template context defines",
        ),
        (
            service_yaml(extra="vars: {app_name: x}\n"),
            "variable 'app_name' shadows a name the template context defines",
        ),
        (
            service_yaml(stacks="  dev: {pipelines: [deploy], ids: {other: abc}}\n"),
            "stacks.dev.ids.other: pinned id for 'other', which this stack does not list in `pipelines`",
        ),
        (
            service_yaml(stacks="  dev: {pipelines: [deploy], ids: {deploy: ../../x}}\n"),
            "pinned id '../../x' for 'deploy' must be lower-case letters",
        ),
        (
            service_yaml().replace("product: prod-x\n", ""),
            "catalog/services/svc.yaml:1: product: required key 'product' is missing",
        ),
        ("name: svc\nstacks: [\n", "catalog/services/svc.yaml:3: YAML error:"),
        ("- just\n- a list\n", "catalog/services/svc.yaml:1: expected a mapping at the top level"),
    ],
)
def test_service_errors_name_file_key_and_line(tmp_path: Path, service_text: str, expected: str) -> None:
    root = write_project(tmp_path, services={"svc": service_text})
    assert expected in only_error(root)


@pytest.mark.parametrize(
    "bad_name",
    ["Svc", "svc..x", "svc/x", "-svc", "svc-", "x" * 64, "svс", "ｓvc", "svc_x", ""],
)
def test_service_names_must_be_dns_labels(tmp_path: Path, bad_name: str) -> None:
    root = write_project(tmp_path, services={"svc": service_yaml(name=f'"{bad_name}"')})
    message = only_error(root)
    assert message.startswith("catalog/services/svc.yaml:1: name: ")
    assert "lower-case DNS label" in message or "longer than 63" in message


@pytest.mark.parametrize("bad_stack", ["Prod", "pr/od", "..", "ргоd"])
def test_stack_names_must_be_dns_labels(tmp_path: Path, bad_stack: str) -> None:
    root = write_project(tmp_path, defaults=f'stacks:\n  "{bad_stack}": {{}}\n')
    message = str(load(root).defaults_error)
    key = f".{bad_stack}" if bad_stack == "Prod" else f"[{json.dumps(bad_stack, ensure_ascii=False)}]"
    assert message.startswith(f"catalog/defaults.yaml:2: stacks{key}: ")
    assert "is not a lower-case DNS label" in message


def test_template_names_must_be_dns_labels(tmp_path: Path) -> None:
    root = write_project(tmp_path, services={"svc": service_yaml(stacks="  dev: {pipelines: [../x]}\n")})
    assert "stacks.dev.pipelines" in only_error(root) and "DNS label" in only_error(root)


def test_service_name_must_match_file(tmp_path: Path) -> None:
    root = write_project(tmp_path, services={"svc": service_yaml(name="other")})
    assert "name: service name 'other' must match its file name 'svc.yaml'" in only_error(root)


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "\n".join(lines) + "\n" + service_yaml()
    root = write_project(tmp_path, services={"svc": bomb})
    started = time.monotonic()
    message = only_error(root)
    assert time.monotonic() - started < 5
    assert "expands to more than" in message and "through YAML aliases" in message


def test_huge_document_is_refused(tmp_path: Path) -> None:
    huge = service_yaml(extra=f"vars: {{blob: '{'x' * MAX_DOCUMENT_BYTES}'}}\n")
    root = write_project(tmp_path, services={"svc": huge})
    assert "document is larger than" in only_error(root)


def test_broken_service_fails_only_that_service(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        services={"good": service_yaml(name="good"), "bad": service_yaml(name="bad", extra="oops: 1\n")},
    )
    catalog = load(root)
    assert sorted(catalog.targets) == ["good/dev/deploy"]
    assert catalog.failed_services == frozenset({"bad"})


def test_broken_defaults_fail_everything(tmp_path: Path) -> None:
    root = write_project(tmp_path, defaults=MINIMAL_DEFAULTS + "surprise: true\n")
    catalog = load(root)
    assert catalog.targets == {} and catalog.defaults_error is not None
    assert "catalog/defaults.yaml:6: surprise: unknown key 'surprise'" in str(catalog.defaults_error)


def test_missing_defaults_is_an_error(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    (root / "catalog" / "defaults.yaml").unlink()
    assert "catalog defaults file is missing" in str(load(root).defaults_error)


def test_yaml_looking_values_load_as_strings(tmp_path: Path) -> None:
    root = write_project(tmp_path, services={"svc": service_yaml(extra="vars: {x: 'a: b # c {{ d }}'}\n")})
    assert load(root).targets["svc/dev/deploy"].context["x"] == "a: b # c {{ d }}"
