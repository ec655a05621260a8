"""Rendering: strict sandbox, inert values, budgets, identities, determinism, the seed's template."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from s3support import PROJECT, service_yaml, write_project

from pipeline_sync.errors import RenderError
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.rendering import Sources, render_all

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "svc/dev/deploy"

HOSTILE = [
    'say "hi"',
    "it's",
    "line one\nline two\n  indented: true",
    "{{ 7*7 }}",
    "{% raw %}x{% endraw %}",
    "key: value",
    "# not a comment",
    "- item",
    "&anchor *alias",
    "!!python/object:os.system",
    "}}{{",
    "\\u0041 \\n \\\\",
    "",
    "null",
    "123",
    "true",
    "a\tb\r\nc",
]

INJECTION_TEMPLATE = """\
application: "{{ app_name }}"
name: "deploy-{{ stack }}"
quoted: "{{ payload }}"
quoted_mixed: "x-{{ payload }}-y"
single: '{{ payload }}'
plain: {{ payload }}
block: |
  {{ payload }}
nested:
  - {k: "{{ payload }}"}
stages:
  - refId: deploy
    type: deployManifest
"""


def workspace(root: Path) -> Sources:
    return Sources.load(root / "catalog", root / "templates")


def render_doc(root: Path, key: str = KEY) -> dict[str, Any]:
    ws = workspace(root)
    return dict(ws.renderer.render(ws.catalog.targets[key]).document)


def render_error(root: Path, key: str = KEY) -> str:
    ws = workspace(root)
    with pytest.raises(RenderError) as info:
        ws.renderer.render(ws.catalog.targets[key])
    return str(info.value)


def project_with(tmp_path: Path, template: str, extra: str = "") -> Path:
    return write_project(
        tmp_path, services={"svc": service_yaml(extra=extra)}, templates={"deploy": template}
    )


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_values_are_inert_quoted_and_unquoted(tmp_path: Path, payload: str) -> None:
    root = project_with(tmp_path, INJECTION_TEMPLATE, extra=f"vars: {{payload: {json.dumps(payload)}}}\n")
    doc = render_doc(root)
    assert doc["quoted"] == payload
    assert doc["single"] == payload
    assert doc["plain"] == payload
    assert doc["quoted_mixed"] == f"x-{payload}-y"
    assert doc["block"] == f"{payload}\n"
    assert doc["nested"] == [{"k": payload}]
    assert set(doc) == {
        "application",
        "name",
        "quoted",
        "quoted_mixed",
        "single",
        "plain",
        "block",
        "nested",
        "stages",
        "id",
    }


def test_whole_expressions_keep_native_types(tmp_path: Path) -> None:
    template = "name: n\nn: {{ n }}\nflag: {{ flag }}\nitems: {{ items }}\nmap: {{ m }}\nnone: {{ nothing }}\nstages: []\n"
    extra = "vars: {n: 3, flag: false, items: [1, two], m: {a: {b: 1}}, nothing: null}\n"
    doc = render_doc(project_with(tmp_path, template, extra))
    assert (doc["n"], doc["flag"], doc["items"], doc["map"], doc["none"]) == (
        3,
        False,
        [1, "two"],
        {"a": {"b": 1}},
        None,
    )


def test_native_values_are_copies_not_shared(tmp_path: Path) -> None:
    template = "name: n\nexpectedArtifacts: {{ artifacts }}\nstages: []\n"
    extra = "vars: {artifacts: [{displayName: chart}]}\n"
    root = project_with(tmp_path, template, extra)
    ws = workspace(root)
    target = ws.catalog.targets[KEY]
    ws.renderer.render(target)
    assert target.context["artifacts"] == [{"displayName": "chart"}]  # the id was added to a copy


def test_undefined_variable_names_template_line_and_partition(tmp_path: Path) -> None:
    root = project_with(tmp_path, 'name: n\nstages: []\nx: "{{ missing }}"\n')
    message = render_error(root)
    assert message.startswith("[svc/dev/deploy] templates/deploy.yaml.j2:3: undefined variable:")
    assert "'missing' is undefined" in message


def test_undefined_attribute_is_an_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, "name: n\nstages: []\nx: {{ helm.chart }}\n", extra="vars: {helm: {}}\n")
    assert "templates/deploy.yaml.j2:3: undefined variable" in render_error(root)


def test_syntax_error_names_line(tmp_path: Path) -> None:
    root = project_with(tmp_path, "name: n\n{% if x %}\nstages: []\n")
    message = render_error(root)
    assert message.startswith("[svc/dev/deploy] templates/deploy.yaml.j2:")
    assert "template syntax error" in message


def test_rendered_document_must_be_a_mapping(tmp_path: Path) -> None:
    root = project_with(tmp_path, "- a\n- b\n")
    assert "template must render a YAML mapping (a pipeline), got list" in render_error(root)


def test_invalid_rendered_yaml_is_reported(tmp_path: Path) -> None:
    root = project_with(tmp_path, "name: n\nname: again\n")
    assert "rendered YAML is invalid (line 2 of the rendered output)" in render_error(root)


def test_dates_must_be_quoted(tmp_path: Path) -> None:
    root = project_with(tmp_path, "name: n\nwhen: 2024-01-01\nstages: []\n")
    assert "parsed as a date; quote it" in render_error(root)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("x: {{ ''.__class__.__mro__ }}", "sandbox"),
        ("x: {{ cycler.__init__.__globals__ }}", "sandbox"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "ran more than 200000",
        ),
        ("{% macro f() %}{{ f() }}{% endmacro %}x: {{ f() }}", "recursion"),
        ("x: {{ 'a' * 1000000000 }}", "multiplication would build"),
        ("x: {{ 10 ** 100000 }}", "exponent"),
    ],
)
def test_sandbox_stops_hostile_templates(tmp_path: Path, template: str, expected: str) -> None:
    root = project_with(tmp_path, template)
    started = time.monotonic()
    message = render_error(root)
    assert time.monotonic() - started < 15
    assert expected in message


def test_template_compiled_once(tmp_path: Path) -> None:
    stacks = "  dev: {pipelines: [deploy]}\n  prod: {pipelines: [deploy]}\n"
    root = write_project(tmp_path, services={"svc": service_yaml(stacks=stacks)})
    ws = workspace(root)
    ws.renderer.render(ws.catalog.targets["svc/dev/deploy"])
    compiled = ws.renderer._compiled(ws.catalog.targets["svc/prod/deploy"])
    ws.renderer.render(ws.catalog.targets["svc/prod/deploy"])
    assert ws.renderer._compiled(ws.catalog.targets["svc/dev/deploy"]) is compiled


def test_pipeline_id_function(tmp_path: Path) -> None:
    stacks = "  dev:\n    pipelines: [deploy, canary]\n    ids: {deploy: pinned-0001}\n"
    canary = "name: c\nstages: []\ntriggers: [{type: pipeline, application: svc, pipeline: \"{{ pipeline_id(app_name, stack, 'deploy') }}\"}]\n"
    root = write_project(
        tmp_path,
        services={"svc": service_yaml(stacks=stacks)},
        templates={"deploy": "name: d\nstages: []\n", "canary": canary},
    )
    doc = render_doc(root, "svc/dev/canary")
    assert doc["triggers"][0]["pipeline"] == "pinned-0001"
    assert render_doc(root, "svc/dev/deploy")["id"] == "pinned-0001"
    assert doc["id"] == pipeline_id_for("svc/dev/canary")


def test_pipeline_id_of_unknown_target_is_an_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, "name: n\nstages: []\nx: \"{{ pipeline_id('nope', 'dev', 'deploy') }}\"\n")
    assert "pipeline_id('nope', 'dev', 'deploy') names no catalog target" in render_error(root)


def test_identity_pass(tmp_path: Path) -> None:
    template = """\
application: something-else
name: n
expectedArtifacts:
  - displayName: chart
triggers:
  - {type: docker, expectedArtifactIds: [chart]}
  - {type: cron, cronExpression: "0 0 * * * ?", id: keep-me}
stages:
  - refId: bake
    type: bakeManifest
    inputArtifacts: [{id: chart}]
    expectedArtifacts: [{displayName: baked}]
  - refId: deploy
    type: deployManifest
    requisiteStageRefIds: [bake]
    manifestArtifactId: baked
    requiredArtifactIds: [chart, baked]
"""
    doc = render_doc(project_with(tmp_path, template))
    pid = pipeline_id_for(KEY)
    assert doc["id"] == pid and pid == pid.lower()
    assert doc["application"] == "svc"
    chart = doc["expectedArtifacts"][0]["id"]
    baked = doc["stages"][0]["expectedArtifacts"][0]["id"]
    assert doc["stages"][0]["inputArtifacts"][0]["id"] == chart
    assert doc["stages"][1]["manifestArtifactId"] == baked
    assert doc["stages"][1]["requiredArtifactIds"] == [chart, baked]
    assert doc["triggers"][0]["expectedArtifactIds"] == [chart]
    assert doc["triggers"][0]["id"] and doc["triggers"][1]["id"] == "keep-me"


def test_renders_are_byte_identical_across_renderers() -> None:
    first = render_all(Sources.load(PROJECT / "catalog", PROJECT / "templates"))
    second = render_all(Sources.load(PROJECT / "catalog", PROJECT / "templates"))
    assert all(o.valid for o in first.values())
    for key, outcome in first.items():
        assert outcome.rendered is not None and second[key].rendered is not None
        assert outcome.rendered.canonical == second[key].rendered.canonical
        assert str(PROJECT) not in outcome.rendered.canonical
        assert "updateTs" not in outcome.rendered.canonical


@pytest.fixture(scope="module")
def property_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("prop"), templates={"deploy": INJECTION_TEMPLATE})


@settings(max_examples=75, deadline=None)
@given(payload=st.text())
def test_any_text_value_renders_as_itself(property_project: Path, payload: str) -> None:
    service = property_project / "catalog" / "services" / "svc.yaml"
    variables = yaml.safe_dump({"vars": {"payload": payload}}, allow_unicode=False)
    service.write_text(service_yaml(extra=variables))
    ws = workspace(property_project)
    target = ws.catalog.targets[KEY]
    first = ws.renderer.render(target)
    again = workspace(property_project).renderer.render(target)
    assert first.document["quoted"] == payload and first.document["plain"] == payload
    assert first.canonical == again.canonical


def test_seed_template_renders_unchanged(tmp_path: Path) -> None:
    stacks = "  prod: {pipelines: [seed-deploy]}\n"
    root = write_project(
        tmp_path,
        defaults="stacks:\n  prod: {}\n",
        services={"my-microservice": service_yaml(name="my-microservice", stacks=stacks)},
        templates={},
    )
    shutil.copy(FIXTURES / "seed-deploy.yaml.j2", root / "templates" / "seed-deploy.yaml.j2")
    outcome = render_all(workspace(root))["my-microservice/prod/seed-deploy"]
    assert outcome.valid, outcome.problems
    assert outcome.rendered is not None
    doc = outcome.rendered.document
    ids = {a["displayName"]: a["id"] for a in doc["expectedArtifacts"]}
    inputs = [a["id"] for a in doc["stages"][1]["inputArtifacts"]]
    assert inputs == [
        ids["hpcnt-workload-chart"],
        ids["prod-x-ns-x-my-microservice-values"],
        ids["prod-x-ns-x-my-microservice-prod-values"],
    ]
    baked = doc["stages"][1]["expectedArtifacts"][0]["id"]
    assert doc["stages"][2]["manifestArtifactId"] == baked
    assert doc["stages"][0]["parameters"]["Branch"] == '${parameters["imageBranch"]}'
