"""Rendering: strict sandbox, inert values, budgets, pipeline_id(), the seed's template, the example catalog."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_sync import render_cache, sandbox
from pipeline_sync.catalog import load_catalog
from pipeline_sync.errors import RenderError
from pipeline_sync.identity import assign_identities, pipeline_id_for
from pipeline_sync.render import Renderer
from pipeline_sync.rendering import Sources, render_all

if TYPE_CHECKING:
    from conftest import MakeProject, Project

REPO = Path(__file__).resolve().parent.parent
SEED = Path(__file__).resolve().parent / "fixtures" / "seed"
KEY = "svc/dev/deploy"
HEAD = 'application: "{{ app_name }}"\nname: "deploy-{{ stack }}"\n'  # lines 1-2


def project_with(
    make_project: MakeProject, root: Path, template: str, variables: dict[str, Any] | None = None
) -> Project:
    service = {"vars": variables} if variables else {}
    return make_project(root, services={"svc": service}, templates={"deploy": template})


def render_error(project: Project, key: str = KEY) -> str:
    with pytest.raises(RenderError) as info:
        project.render(key)
    return str(info.value)


# --- values are inert: they can never change the YAML structure ------------------------------

INERT_TEMPLATE = (
    HEAD
    + """\
description: "{{ description }}"
quoted_mixed: "x-{{ description }}-y"
single: '{{ description }}'
plain: {{ description }}
plain_mixed: {{ description }} and more
block: |
  {{ description }}
block_strip: |-
  {{ description }}
folded: >-
  {{ description }}
flow: [{{ description }}, "{{ description }}"]
flow_map: {k: {{ description }}}
nested:
  - {k: "{{ description }}"}
# a comment mentioning {{ description }}
stages:
  - refId: deploy
    type: wait
    name: "Deploy {{ description }}"
"""
)

HOSTILE = [
    'say "hi"',
    "it's",
    "line one\nline two",
    "line one\nline two\n  indented: true",
    "x\n  injected: true",
    'x"\ninjected: true\ny: "',
    "{{ 7*7 }}",
    "{% raw %}x{% endraw %}",
    "{% if true %}x{% endif %}",
    "key: value",
    "# not a comment",
    "- item",
    "&anchor *alias",
    "!!python/object:os.system",
    "!!python/object/apply:os.system ['echo hi']",
    "}}{{",
    "| literal",
    "> folded",
    "[a, b]",
    "{a: b}",
    "---",
    "...",
    "",
    " ",
    "null",
    "~",
    "123",
    "0x1F",
    "1e3",
    "true",
    "no",
    "2024-01-01",
    "a\tb\r\nc",
    "\\u0041 \\n \\\\",
    "\u2028\x85\ufeff",
    "%s %d {0}",
    "PSV0123456789abcdefN0Z",
]


@pytest.fixture(scope="module")
def inert_project(make_project: MakeProject, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("inert"), templates={"deploy": INERT_TEMPLATE})


def render_with(project: Project, variables: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    project.write_service("svc", {"vars": variables})
    return dict(project.render(key).document)


def expected_inert(payload: str) -> dict[str, Any]:
    return {
        "application": "svc",
        "name": "deploy-dev",
        "description": payload,
        "quoted_mixed": f"x-{payload}-y",
        "single": payload,
        "plain": payload,
        "plain_mixed": f"{payload} and more",
        "block": f"{payload}\n",
        "block_strip": payload,
        "folded": payload,
        "flow": [payload, payload],
        "flow_map": {"k": payload},
        "nested": [{"k": payload}],
        "stages": [{"refId": "deploy", "type": "wait", "name": f"Deploy {payload}"}],
        "id": pipeline_id_for(KEY),
    }


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_values_come_out_as_that_exact_string(inert_project: Project, payload: str) -> None:
    assert render_with(inert_project, {"description": payload}) == expected_inert(payload)


@settings(max_examples=75, deadline=None)
@given(payload=st.text())
def test_any_text_renders_as_itself_and_deterministically(inert_project: Project, payload: str) -> None:
    inert_project.write_service("svc", {"vars": {"description": payload}})
    first = inert_project.render()
    again = inert_project.render()
    assert dict(first.document) == expected_inert(payload)
    assert first.canonical == again.canonical


def test_native_values_inserted_whole_keep_their_type(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + (
        "stages: []\nn: {{ n }}\nf: {{ f }}\nflag: {{ flag }}\nnone: {{ nothing }}\nitems: {{ items }}\n"
        "map: {{ m }}\nin_flow: [{{ n }}, {{ flag }}]\nexpr: {{ n * 2 }}\n"
        'quoted_n: "{{ n }}"\nquoted_flag: "{{ flag }}"\nmixed: "{{ n }}-{{ flag }}"\n'
    )
    variables = {
        "n": 3,
        "f": 1.5,
        "flag": False,
        "nothing": None,
        "items": [1, "two", {"k": [True]}],
        "m": {"a": {"b": 1}},
    }
    doc = project_with(make_project, tmp_path, template, variables).render().document
    assert (doc["n"], doc["f"], doc["flag"], doc["none"]) == (3, 1.5, False, None)
    assert doc["items"] == [1, "two", {"k": [True]}] and doc["map"] == {"a": {"b": 1}}
    assert doc["in_flow"] == [3, False] and doc["expr"] == 6
    # Quoting in the template means a string, as it would in plain YAML.
    assert (doc["quoted_n"], doc["quoted_flag"], doc["mixed"]) == ("3", "False", "3-False")


def test_inserted_values_are_copies(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + "expectedArtifacts: {{ artifacts }}\nstages: []\n"
    project = project_with(make_project, tmp_path, template, {"artifacts": [{"displayName": "chart"}]})
    catalog = project.load()
    target = catalog.targets[KEY]
    rendered = Renderer(project.templates_dir, catalog).render(target)
    assert "id" in rendered.document["expectedArtifacts"][0]
    assert target.context["artifacts"] == [{"displayName": "chart"}]


def test_values_can_never_add_or_replace_keys(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + "stages: []\n{{ label }}: from-a-value\n"
    project = project_with(make_project, tmp_path, template, {"label": "name"})
    assert render_error(project) == (
        "[svc/dev/deploy] templates/deploy.yaml.j2: name: key 'name' appears twice once values are filled in"
    )


def test_macros_and_set_blocks_write_structure_while_values_stay_inert(
    make_project: MakeProject, tmp_path: Path
) -> None:
    template = """\
{%- macro stage(ref, label) -%}
- refId: "{{ ref }}"
  name: "{{ label }}"
  type: wait
{%- endmacro -%}
{%- set summary %}{{ app_name }} on {{ stack }}: {{ description }}{% endset -%}
application: "{{ app_name }}"
name: "deploy-{{ stack }}"
description: "{{ summary }}"
stages:
  {{ stage("one", description) | indent(2) }}
  {{ stage(app_name, "two") | indent(2) }}
"""
    payload = 'x"\n- refId: injected\n  type: evil'
    doc = project_with(make_project, tmp_path, template, {"description": payload}).render().document
    assert doc["description"] == f"svc on dev: {payload}"
    assert doc["stages"] == [
        {"refId": "one", "name": payload, "type": "wait"},
        {"refId": "svc", "name": "two", "type": "wait"},
    ]


def test_a_macro_output_used_as_a_value_is_its_text(make_project: MakeProject, tmp_path: Path) -> None:
    template = (
        HEAD
        + '{% macro values(n) %}{{ n }}-values{% endmacro %}stages: []\nx: "{{ values(app_name) }}"\ny: {{ values(app_name) ~ "!" }}\n'
    )
    doc = project_with(make_project, tmp_path, template).render().document
    assert (doc["x"], doc["y"]) == ("svc-values", "svc-values!")


def test_a_filter_that_mangles_template_text_is_an_error(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + "stages: []\n{% filter upper %}x: {{ app_name }}{% endfilter %}\n"
    message = render_error(project_with(make_project, tmp_path, template))
    assert "X: a filter or string operation changed the text a macro or block produced" in message


# --- errors: undefined names, syntax, shape ---------------------------------------------------


def test_undefined_variable_names_template_file_line_and_partition(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = project_with(make_project, tmp_path, HEAD + 'description: "{{ missing }}"\nstages: []\n')
    assert render_error(project) == (
        "[svc/dev/deploy] templates/deploy.yaml.j2:3: undefined variable: 'missing' is undefined; "
        "define it in the catalog (vars) or fix the template"
    )


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        ("stages: []\nx: {{ helm.nope }}\n", 4, "'dict object' has no attribute 'nope'"),
        ("stages: []\nx: {% if nothing %}1{% endif %}\n", 4, "'nothing' is undefined"),
        ("{% macro m() %}\na: {{ missing }}\n{% endmacro %}\nx: {{ m() }}\n", 4, "'missing' is undefined"),
        ("stages: []\nx: {{ missing | default('fine') }}\ny: {{ other }}\n", 5, "'other' is undefined"),
    ],
)
def test_strict_undefined_everywhere(
    make_project: MakeProject, tmp_path: Path, body: str, line: int, expected: str
) -> None:
    project = project_with(make_project, tmp_path, HEAD + body, {"helm": {"chart": "c"}})
    message = render_error(project)
    assert message.startswith(f"[svc/dev/deploy] templates/deploy.yaml.j2:{line}: undefined variable: ")
    assert expected in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "stages: []\n{% if x %}\nfoo: 1\n",
            "templates/deploy.yaml.j2:4: template syntax error: Unexpected end of template",
        ),
        (
            "stages: []\nx: {{ y | nofilter }}\n",
            "templates/deploy.yaml.j2:4: template syntax error: No filter named 'nofilter'.",
        ),
        (
            "stages: []\nx: {{ 'a' ~ }}\n",
            "templates/deploy.yaml.j2:4: template syntax error: unexpected 'end of print statement'",
        ),
    ],
)
def test_template_syntax_error_names_line(
    make_project: MakeProject, tmp_path: Path, body: str, expected: str
) -> None:
    assert render_error(project_with(make_project, tmp_path, HEAD + body)).startswith(
        f"[svc/dev/deploy] {expected}"
    )


def test_template_is_compiled_once(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[str | None] = []
    original = sandbox.BudgetedSandbox.compile

    def counting(self: Any, source: Any, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name)
        return original(self, source, name, *args, **kwargs)

    monkeypatch.setattr(sandbox.BudgetedSandbox, "compile", counting)
    stacks = {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}}
    project = make_project(tmp_path, services={"a": {"stacks": stacks}, "b": {"stacks": stacks}})
    catalog = project.load()
    renderer = Renderer(project.templates_dir, catalog)
    documents = [renderer.render(target).document for target in catalog.targets.values()]
    assert compiled == ["deploy"]
    assert sorted(d["name"] for d in documents) == ["deploy-dev", "deploy-dev", "deploy-prod", "deploy-prod"]


@pytest.mark.parametrize(
    ("template", "kind"),
    [("- a\n- b\n", "list"), ("just text\n", "str"), ("# nothing\n", "NoneType"), ("{{ items }}\n", "list")],
)
def test_rendered_document_must_be_a_mapping(
    make_project: MakeProject, tmp_path: Path, template: str, kind: str
) -> None:
    project = project_with(make_project, tmp_path, template, {"items": [1]})
    assert render_error(project) == (
        f"[svc/dev/deploy] templates/deploy.yaml.j2: template must render a YAML mapping (a pipeline), got {kind}"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "stages: []\nname: again\n",
            "rendered YAML is invalid (line 4 of the rendered output): duplicate key 'name' (first defined on line 2)",
        ),
        (
            "stages: []\nwhen: 2024-01-01\n",
            "when: value 2024-01-01 parsed as a date; quote it in the template",
        ),
        ("stages: []\nwhen: {{ day }}\n", "when: value 2024-01-01 parsed as a date; quote it in the catalog"),
        ("stages: []\nx: {{ range(3) }}\n", "x: a range value is not JSON data; convert it in the template"),
        ("stages: []\nx: {{ [1, 2] | map('string') }}\n", "x: a generator value is not JSON data"),
        ("stages: []\nx: {{ 1 / 0 }}\n", "templates/deploy.yaml.j2:4: ZeroDivisionError: division by zero"),
        ("stages: []\nx: {{ [].pop() }}\n", "templates/deploy.yaml.j2:4: IndexError: pop from empty list"),
        ("stages: []\nx: {{ 10.0 ** 400 }}\n", "templates/deploy.yaml.j2:4: OverflowError:"),
        ("stages: []\nx: .nan\n", "x: value is not a finite number"),
        ("stages: []\n1: x\n", "mapping key 1 is not a string; quote it"),
        ("stages: []\nx: {{ [1] | random }}\n", "No filter named 'random'"),
        ("stages: []\nx: {{ lipsum() }}\n", "'lipsum' is undefined"),
        (
            "stages: []\nx: !!int 08\n",
            "rendered YAML is invalid (line 4 of the rendered output): YAML error: cannot read '08' as !!int",
        ),
    ],
)
def test_template_failures_are_render_errors(
    make_project: MakeProject, tmp_path: Path, body: str, expected: str
) -> None:
    project = make_project(
        tmp_path,
        services={
            "svc": "name: svc\nproduct: p\nteam: t\nnamespace: n\ngit_repo: g\nvars: {day: 2024-01-01}\nstacks:\n  dev: {pipelines: [deploy]}\n"
        },
        templates={"deploy": HEAD + body},
    )
    message = render_error(project)
    assert message.startswith("[svc/dev/deploy] templates/deploy.yaml.j2")
    assert expected in message


# --- the sandbox ------------------------------------------------------------------------------

DOUBLING = (
    "{% macro d(s, n) %}{% if n %}{{ d(s OP s, n - 1) }}{% else %}{{ s | length }}{% endif %}{% endmacro %}"
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "x: {{ ''.__class__.__mro__ }}",
            "the template sandbox refused: access to attribute '__class__' of 'str'",
        ),
        ("x: {{ cycler.__init__.__globals__ }}", "the template sandbox refused"),
        (
            "x: {{ pipeline_id.__globals__ }}",
            "access to attribute '__globals__' of 'function' object is unsafe",
        ),
        ("x: {{ ''|attr('__class__') }}", "the template sandbox refused"),
        ("x: {{ joiner.__init__.__globals__['os'] }}", "the template sandbox refused"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "ran more than 20000 times",
        ),
        ("{% macro f() %}{{ f() }}{% endmacro %}x: {{ f() }}", "template recursion went too deep"),
        (
            "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}x: {{ f(0) }}",
            "template recursion went too deep",
        ),
        (
            "{% macro f(n) %}{% if n < 40 %}{% set a = f(n + 1) %}{% set b = f(n + 1) %}{% endif %}{% endmacro %}x: {{ f(0) }}",
            "ran more than 20000 times",
        ),
        (
            "{% for x in [1, 1] recursive %}{% if loop.depth < 40 %}{% set a = loop([1, 1]) %}{% endif %}{% endfor %}",
            "ran more than 20000 times",
        ),
        ("x: {{ range(1000000000) | length }}", "The sandbox blocks ranges larger than MAX_RANGE"),
        ("x: {{ 'a' * 10**9 }}", "a multiplication would build a string or sequence of 1000000000 items"),
        ("x: {{ [1] * 10**9 }}", "a multiplication would build"),
        ("x: {{ '%0999999999d' % 1 }}", "a `%` format would build"),
        ("x: {{ '%0*d' % (10**9, 1) }}", "a `%` format would build"),
        ("x: {{ '{:>999999999}'.format(1) }}", "a `format` call would build"),
        ("x: {{ '{:{w}}'.format(1, w=10**9) }}", "a `format` call would build"),
        ("x: {{ '%0999999999d' | format(1) }}", "a `%` format would build"),
        ("x: {{ 'a' | center(10**9) }}", "the center filter would build"),
        ("x: {{ 'a'.ljust(10**9) }}", "str.ljust would build"),
        ("x: {{ 'a\\n' * 1000 | indent(10**6) }}", "the indent filter would build"),
        ("x: {{ ('a' * 999999) | replace('', 'bb') }}", "the replace filter would build"),
        ("x: {{ (['a' * 999999] * 1000) | join }}", "the join filter would build"),
        ("x: {{ '-'.join(['a' * 999999] * 1000) }}", "str.join would build"),
        ("x: {{ [1] | batch(10**9, 0) | list }}", "would build"),
        (DOUBLING.replace("OP", "~") + "x: {{ d('a', 40) }}", "a `~` concatenation would build"),
        (DOUBLING.replace("OP", "+") + "x: {{ d('a', 40) }}", "a `+` would build"),
        ("x: {{ 10 ** 100000 }}", "exponent 100000 is too large"),
        ("x: {{ (9 ** 999) ** 999 }}", "exponent 999 is too large"),
        (
            "{% for i in range(100000) %}{{ big }}{% endfor %}",
            "values the template outputs add up to more than",
        ),
        (
            "{% set a = [] %}{% set _ = a.append(a) %}x: {{ a }}",
            "nests deeper than 100 levels (or contains itself)",
        ),
    ],
)
def test_sandbox_stops_hostile_templates_quickly(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, expected: str
) -> None:
    monkeypatch.setattr(sandbox, "MAX_LOOP_ITERATIONS", 20_000)  # the same budget, a tenth of the wait
    project = project_with(
        make_project, tmp_path, HEAD + "stages: []\n" + body + "\n", {"big": ["x" * 100] * 100}
    )
    started = time.monotonic()
    message = render_error(project)
    assert time.monotonic() - started < 8  # a budget, not the 10 s deadline, stopped it (see the message)
    assert message.startswith("[svc/dev/deploy] templates/deploy.yaml.j2")
    assert expected in message


def test_the_real_loop_budget_stops_nested_loops(make_project: MakeProject, tmp_path: Path) -> None:
    body = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    project = project_with(make_project, tmp_path, HEAD + "stages: []\n" + body)
    started = time.monotonic()
    message = render_error(project)
    assert time.monotonic() - started < 15
    assert message == (
        "[svc/dev/deploy] templates/deploy.yaml.j2: template loops and macro calls ran more than "
        f"{sandbox.MAX_LOOP_ITERATIONS} times; is there a loop or a recursion without end?"
    )


def test_ordinary_loops_formats_and_macros_are_fine(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + (
        "{% macro w(n) %}{{ n }}{% endmacro %}stages: []\n"
        "weights: [{% for i in range(1000) %}{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}]\n"
        "padded: \"{{ '%05d' % 42 }}-{{ '{:>4}'.format(7) }}-{{ 'ab' | center(6) }}\"\n"
        "joined: \"{{ ['a', 'b'] | join('-') }}{{ 'x' * 3 }}{{ w(1) }}\"\n"
    )
    doc = project_with(make_project, tmp_path, template).render().document
    assert doc["weights"] == list(range(1000))
    assert doc["padded"] == "00042-   7-  ab  "
    assert doc["joined"] == "a-bxxx1"


# --- pipeline_id() ----------------------------------------------------------------------------

TRIGGERED = (
    HEAD
    + """\
stages: []
triggers:
  - {type: pipeline, application: svc, pipeline: "{{ pipeline_id(app_name, stack, 'deploy') }}"}
  - {type: pipeline, application: other, pipeline: "{{ pipeline_id('other', 'prod', 'deploy') }}"}
"""
)


def test_pipeline_id_gives_another_targets_id(make_project: MakeProject, tmp_path: Path) -> None:
    stacks = {"dev": {"pipelines": ["deploy", "canary"]}}
    other = {"stacks": {"prod": {"pipelines": ["deploy"], "ids": {"deploy": "adopted-0001"}}}}
    project = make_project(
        tmp_path,
        services={"svc": {"stacks": stacks}, "other": other},
        templates={
            "deploy": HEAD + "stages: []\n",
            "canary": TRIGGERED.replace("deploy-{{ stack }}", "canary"),
        },
    )
    doc = project.render("svc/dev/canary").document
    assert [t["pipeline"] for t in doc["triggers"]] == [pipeline_id_for("svc/dev/deploy"), "adopted-0001"]
    assert doc["id"] == pipeline_id_for("svc/dev/canary")
    assert project.render("svc/dev/deploy").document["id"] == pipeline_id_for("svc/dev/deploy")
    assert project.render("other/prod/deploy").document["id"] == "adopted-0001"


def test_pipeline_id_of_a_target_not_in_the_catalog_is_an_error(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(tmp_path, services={"svc": {}, "other": {}}, templates={"deploy": TRIGGERED})
    assert render_error(project) == (
        "[svc/dev/deploy] templates/deploy.yaml.j2:6: pipeline_id('other', 'prod', 'deploy') names no catalog target"
    )


def test_pipeline_id_of_a_service_that_failed_to_load_still_resolves(
    make_project: MakeProject, tmp_path: Path
) -> None:
    broken = "name: other\nnot: valid\n"
    project = make_project(tmp_path, services={"svc": {}, "other": broken}, templates={"deploy": TRIGGERED})
    assert project.load().failed_services == frozenset({"other"})
    doc = project.render().document  # its targets are unknown, not absent
    assert doc["triggers"][1]["pipeline"] == pipeline_id_for("other/prod/deploy")


APPLICATION_REFERENCES = (
    HEAD
    + """\
stages: []
triggers:
  - {type: pipeline, application: "{{ app_name }}", pipeline: "{{ pipeline_id(app_name, 'prod', 'deploy') }}"}
  - {type: pipeline, application: x, pipeline: "{{ pipeline_id('checkout_api', 'prod', 'deploy') }}"}
  - {type: pipeline, application: x, pipeline: "{{ pipeline_id('CHECKOUT_API', 'prod', 'deploy') }}"}
  - {type: pipeline, application: x, pipeline: "{{ pipeline_id('Search', 'dev', 'deploy') }}"}
"""
)


def application_project(make_project: MakeProject, root: Path, template: str) -> Project:
    checkout = {
        "application": "Checkout_API",
        "stacks": {"dev": {"pipelines": ["deploy"]}, "prod": {"pipelines": ["deploy"]}},
    }
    return make_project(root, services={"checkout": checkout, "search": {}}, templates={"deploy": template})


def test_app_name_is_the_application_and_pipeline_id_maps_it_to_the_service(
    make_project: MakeProject, tmp_path: Path
) -> None:
    doc = (
        application_project(make_project, tmp_path, APPLICATION_REFERENCES)
        .render("checkout/dev/deploy")
        .document
    )
    assert doc["application"] == "Checkout_API"
    assert doc["id"] == pipeline_id_for("checkout/dev/deploy")  # ids still come from the key
    assert doc["triggers"][0]["application"] == "Checkout_API"
    prod = pipeline_id_for("checkout/prod/deploy")
    assert [t["pipeline"] for t in doc["triggers"]] == [
        prod,
        prod,
        prod,
        pipeline_id_for("search/dev/deploy"),
    ]


def test_pipeline_id_wants_the_application_not_the_service_name(
    make_project: MakeProject, tmp_path: Path
) -> None:
    template = (
        HEAD
        + "stages: []\ntriggers:\n  - {type: pipeline, application: x, pipeline: \"{{ pipeline_id('checkout', 'prod', 'deploy') }}\"}\n"
    )
    project = application_project(make_project, tmp_path, template)
    assert render_error(project, "search/dev/deploy") == (
        "[search/dev/deploy] templates/deploy.yaml.j2:5: pipeline_id('checkout', 'prod', 'deploy') names no "
        "catalog target; its first argument is the Spinnaker application, and service 'checkout' is "
        "application 'Checkout_API': call pipeline_id('Checkout_API', ...) or pass app_name"
    )


def test_a_template_cannot_set_another_application(make_project: MakeProject, tmp_path: Path) -> None:
    project = application_project(
        make_project, tmp_path, 'application: payments\nname: "d-{{ stack }}"\nstages: []\n'
    )
    assert project.render("checkout/prod/deploy").document["application"] == "Checkout_API"


# --- the seed's template and the example catalog ----------------------------------------------


@pytest.fixture
def seed_project(tmp_path: Path) -> Path:
    """A copy of tests/fixtures/seed, so nothing a render does can touch the repository."""
    return Path(shutil.copytree(SEED, tmp_path / "seed"))


def test_seed_template_renders_unchanged(seed_project: Path) -> None:
    catalog = load_catalog(seed_project / "catalog", seed_project / "templates")
    assert catalog.errors == []
    key = "my-microservice/prod/seed-deploy"
    rendered = Renderer(seed_project / "templates", catalog).render(catalog.targets[key])
    # What the seed itself did: plain Jinja2, then YAML, then ids.
    source = (SEED / "templates" / "seed-deploy.yaml.j2").read_text(encoding="utf-8")
    context = {
        "app_name": "my-microservice",
        "product": "azar",
        "namespace": "matching",
        "git_repo": "my-microservice",
        "stack": "prod",
    }
    expected = yaml.safe_load(jinja2.Template(source).render(context))
    assign_identities(expected, pipeline_id_for(key), "my-microservice")
    assert rendered.document == expected
    assert rendered.document["name"] == "deploy"
    assert rendered.document["stages"][0]["parameters"]["Branch"] == '${parameters["imageBranch"]}'
    outcome = render_all(Sources.load(seed_project / "catalog", seed_project / "templates"))[key]
    assert outcome.valid, outcome.problems  # and it passes validation as Front50 and Orca would read it


def test_seed_template_references_by_display_name_become_ids(seed_project: Path) -> None:
    catalog = load_catalog(seed_project / "catalog", seed_project / "templates")
    doc = (
        Renderer(seed_project / "templates", catalog)
        .render(catalog.targets["my-microservice/prod/seed-deploy"])
        .document
    )
    ids = {a["displayName"]: a["id"] for a in doc["expectedArtifacts"]}
    assert list(ids) == [
        "hpcnt-workload-chart",
        "azar-matching-my-microservice-values",
        "azar-matching-my-microservice-prod-values",
    ]
    bake, deploy = doc["stages"][1], doc["stages"][2]
    assert [a["id"] for a in bake["inputArtifacts"]] == list(ids.values())
    assert [a["account"] for a in bake["inputArtifacts"]] == ["harbor", "git-hpcnt-bot", "git-hpcnt-bot"]
    assert deploy["manifestArtifactId"] == bake["expectedArtifacts"][0]["id"]
    assert bake["expectedArtifacts"][0]["displayName"] == "my-microservice-deploy"


def test_example_catalog_renders_all_targets() -> None:
    catalog = load_catalog(REPO / "catalog", REPO / "templates")
    renderer = Renderer(REPO / "templates", catalog)
    rendered = {key: renderer.render(target) for key, target in catalog.targets.items()}
    assert len(rendered) == 13
    names: dict[str, set[str]] = {}
    for key, pipeline in rendered.items():
        service = key.split("/")[0]
        assert pipeline.document["id"] == pipeline.pipeline_id == pipeline_id_for(key)
        assert pipeline.document["application"] == service
        assert pipeline.document["name"].lower() not in names.setdefault(service, set())
        names[service].add(pipeline.document["name"].lower())
    canary = rendered["checkout/prod/deploy-canary"].document
    assert canary["triggers"][0]["pipeline"] == pipeline_id_for("checkout/prod/deploy")
    assert [s["refId"] for s in canary["stages"]][-3:] == ["shift-50", "judge-50", "rollback"]
    # a judgment's choice decides whether the next step runs, and whether the canary is rolled back
    assert canary["stages"][-3]["stageEnabled"] == {
        "type": "expression",
        "expression": "${#judgment('Judge the canary at 25%') == 'Continue'}",
    }
    assert canary["stages"][-1]["stageEnabled"]["expression"] == (
        "${#judgment('Judge the canary at 50%') != 'Continue'}"
    )
    dev = rendered["checkout/dev/deploy"].document
    assert dev["triggers"][0]["enabled"] is True and dev["stages"][2]["overrides"]["replicaCount"] == 3
    # a pushed image's tag feeds the image, and a pushed image skips the build
    assert dev["triggers"][1]["type"] == "docker"
    assert dev["stages"][2]["overrides"]["image.tag"] == "${trigger['tag'] ?: parameters['version']}"
    assert dev["stages"][0]["stageEnabled"]["expression"] == "${trigger['type'] != 'docker'}"


# --- SpEL is verbatim in templates --------------------------------------------------------------

STAGE_NAMES = ["Bake", "Deploy to prod", "Judge the canary at 10%", "Manual Judgment", "find image"]
SPEL_KEYS = ["context", "outputs", "status", "artifacts", "tag", "version"]


def _quoted(text: str, quote: str) -> str:
    return quote + text.replace(quote, quote * 2) + quote


@st.composite
def _spel_atom(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(STAGE_NAMES))
    key = draw(st.sampled_from(SPEL_KEYS))
    quote = draw(st.sampled_from(["'", '"']))
    return draw(
        st.sampled_from(
            [
                f"#stage({_quoted(name, quote)})",
                f"#judgment({_quoted(name, quote)})",
                "#currentStage()",
                f"#stageByRefId({_quoted(key, quote)})",
                f"#fromUrl('https://config.example.com/{key}.json?env=prod&x=1')",
                f"trigger[{_quoted(key, quote)}]",
                f"trigger.{key}",
                f"parameters[{_quoted(key, quote)}]",
                "execution.id",
                f"{{'{key}': 1, 'n': {{'m': 2}}}}['{key}']",  # map literals, nested
                "42",
            ]
        )
    )


def _spel_expression() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.builds(lambda x, k: f"{x}['{k}']", inner, st.sampled_from(SPEL_KEYS)),
            st.builds(lambda x, k: f"{x}?.{k}", inner, st.sampled_from(SPEL_KEYS)),
            st.builds(lambda x: f"#toJson({x})", inner),
            st.builds(lambda x: f"#alphanumerical({x})", inner),
            st.builds(lambda x: f"#readJson(#toJson({x}))", inner),
            st.builds(lambda x, v: f"{x} == '{v}'", inner, st.sampled_from(["Continue", "Roll back"])),
            st.builds(lambda x, y: f"{x} ?: {y}", inner, inner),
            st.builds(lambda x, y: f"{x} != null ? {x} : {y}", inner, inner),
            st.builds(lambda x, y: f"{{ {x}, {y} }}.contains('SUCCEEDED')", inner, inner),  # inline list
            st.builds(lambda x: f"{{'value': {x}}}['value']", inner),
            st.builds(lambda x: f"({x})", inner),
        )

    return st.recursive(_spel_atom(), extend, max_leaves=6)


@st.composite
def spel(draw: st.DrawFn) -> str:
    """A whole ${...} SpEL expression as pipelines write them, with or without inner spaces."""
    expression = draw(_spel_expression())
    pad = draw(st.sampled_from(["", " "]))
    # `${{` would open a Jinja expression: a literal at the start takes a space (SpEL ignores it)
    opening = " " if expression.startswith("{") else pad
    return "${" + opening + expression + pad + "}"


def _plain_scalar_can_hold(text: str) -> bool:
    # YAML, not Jinja: ": " starts a mapping and " #" a comment in an unquoted scalar
    return ": " not in text and " #" not in text


SPEL_TEMPLATE = HEAD + "stages:\n  - refId: '1'\n    type: evaluateVariables\n"


def spel_template(text: str) -> str:
    lines = [
        f"    double: {json.dumps(text, ensure_ascii=False)}",
        f"    single: {_quoted(text, chr(39))}",
        "    block: |-",
        f"      {text}",
    ]
    if _plain_scalar_can_hold(text):
        lines.append(f"    plain: {text}")
    return SPEL_TEMPLATE + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def spel_project(make_project: MakeProject, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("spel"))


def rendered_spel(project: Project, text: str) -> dict[str, Any]:
    (project.templates_dir / "deploy.yaml.j2").write_text(spel_template(text), encoding="utf-8")
    rendered = project.render()
    stage = json.loads(rendered.canonical)["stages"][0]
    assert stage == rendered.document["stages"][0]
    return dict(stage)


def expected_spel(text: str) -> dict[str, Any]:
    fields = {"double": text, "single": text, "block": text}
    if _plain_scalar_can_hold(text):
        fields["plain"] = text
    return {"refId": "1", "type": "evaluateVariables", **fields}


@settings(max_examples=150, deadline=None)
@given(text=spel())
def test_spel_comes_out_byte_identical_in_every_yaml_scalar(spel_project: Project, text: str) -> None:
    assert rendered_spel(spel_project, text) == expected_spel(text)


@pytest.mark.parametrize(
    "text",
    [
        "${#stage('Bake')['context']}",
        "${#stage('Bake')['context']['artifacts']}",
        "${ #toJson(#stage('Bake')['outputs']) }",
        "${#toJson(trigger['artifacts'])}",
        "${#judgment('Approve rollout')}",
        "${#judgment('Approve rollout') == 'Continue'}",
        "${#fromUrl('https://config.example.com/app.json')}",
        "${#readJson(#fromUrl('https://config.example.com/app.json'))['replicas']}",
        "${#alphanumerical(trigger['tag'])}",
        "${#currentStage()['context']['account']}",
        "${ {'a': 1}['a'] }",
        "${ {'a': {'b': [1, 2]}}['a']['b'] }",
        "${ { #stage('a').status, #stage('b').status }.contains('TERMINAL') }",
        "${trigger['tag'] ?: parameters['version']}",
        "${#stage('Deploy')?.context?.outputs}",
        "${#root.execution.id}",
        "${#doesStageExist('Bake')}",
        "${#manifestLabelValue('Deploy', 'Deployment', 'app')}",
        '${parameters["version"]}',
        "x-${#stage('a')}-y ${#judgment('b')} }",
    ],
)
def test_real_spel_shapes_come_out_unchanged(spel_project: Project, text: str) -> None:
    assert rendered_spel(spel_project, text) == expected_spel(text)


def test_spel_keeps_jinja_expressions_inside_it(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + (
        "stages:\n  - refId: judge\n    type: manualJudgment\n"
        '    name: "Judge {{ stack }}"\n'
        "  - refId: go\n    type: wait\n    requisiteStageRefIds: [judge]\n"
        "    stageEnabled:\n      type: expression\n"
        "      expression: \"${#judgment('Judge {{ stack }}') == '{{ choice }}'}\"\n"
    )
    doc = project_with(make_project, tmp_path, template, {"choice": 'it\'s "on"'}).render().document
    assert doc["stages"][1]["stageEnabled"]["expression"] == "${#judgment('Judge dev') == 'it's \"on\"'}"


def test_jinja_comments_still_work_next_to_spel(make_project: MakeProject, tmp_path: Path) -> None:
    template = (
        "{#- a template comment with ${#stage('x')} in it -#}\n"
        + HEAD
        + "stages: []  {# a trailing comment #}\n"
        + "expression: \"${#judgment('a')}\"  {# and one after SpEL #}\n"
        + "shell: 'echo ${#ARGS[@]}'\n"
    )
    doc = project_with(make_project, tmp_path, template).render().document
    assert (doc["stages"], doc["expression"], doc["shell"]) == ([], "${#judgment('a')}", "echo ${#ARGS[@]}")


def test_raw_still_passes_jinja_like_text_through(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + (
        'stages: []\n{% raw %}\nhelm: "{{ .Values.image.tag }}"\n'
        "spel: \"${{'a', 'b'}.contains(trigger['tag'])} ${#stage('x')}\"\n{% endraw %}\n"
    )
    doc = project_with(make_project, tmp_path, template).render().document
    assert doc["helm"] == "{{ .Values.image.tag }}"
    assert doc["spel"] == "${{'a', 'b'}.contains(trigger['tag'])} ${#stage('x')}"


def test_spel_inside_a_jinja_string_is_left_to_jinja(make_project: MakeProject, tmp_path: Path) -> None:
    template = HEAD + "stages: []\nexpression: \"{{ '${#judgment(' ~ quote ~ ')}' }}\"\n"
    doc = project_with(make_project, tmp_path, template, {"quote": "'a'"}).render().document
    assert doc["expression"] == "${#judgment('a')}"


def test_double_brace_inside_spel_is_still_jinja(make_project: MakeProject, tmp_path: Path) -> None:
    # what the README documents: `{{` always opens a Jinja expression; write `${ {...} }` instead
    template = HEAD + "stages: []\nexpression: \"${{'a': 1}['a']}\"\n"
    assert "template syntax error" in render_error(project_with(make_project, tmp_path, template))


def test_spel_templates_are_cached_and_random_is_never_available(
    make_project: MakeProject, tmp_path: Path
) -> None:
    # SpEL does not make a template uncacheable, and a `random` hidden after `${#` is still refused
    spel = project_with(make_project, tmp_path / "spel", HEAD + "stages: []\nx: \"${#stage('a')}\"\n")
    cache = render_cache.RenderCache(tmp_path / "renders.sqlite")
    workspace = Sources.load(spel.catalog_dir, spel.templates_dir, render_cache=cache)
    assert render_all(workspace)[KEY].valid
    with sqlite3.connect(tmp_path / "renders.sqlite") as db:
        assert db.execute(f"SELECT count(*) FROM {render_cache.TABLE}").fetchone() == (1,)
    hidden = HEAD + "stages: []\nx: ${#a} {{ [1, 2] | random }} #}\n"
    assert "random" in render_error(project_with(make_project, tmp_path / "random", hidden))
    assert {"pipeline_sync.spel", "pipeline_sync.sandbox"} <= set(render_cache.CODE_MODULES)
