"""Front50's typed fields (front50_model): what Jackson reads, what it refuses, and its parser limits."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline_sync import render_cache
from pipeline_sync.front50_model import (
    MAX_DEPTH,
    MAX_NAME_CHARS,
    MAX_NUMBER_DIGITS,
    MAX_STRING_CHARS,
    PIPELINE_FIELDS,
    JavaType,
    limit_problems,
)
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.validate import validate_pipeline

KEY = "checkout/prod/deploy"
STALLS = "Front50 could not load this pipeline, and one it cannot load stops its cache refresh for every application"
TEMPLATE_REF = {
    "artifactAccount": "front50ArtifactCredentials",
    "reference": "spinnaker://deploy-template",
    "type": "front50/pipelineTemplate",
}


def pipeline(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": pipeline_id_for(KEY),
        "name": "deploy-prod",
        "application": "checkout",
        "stages": [{"refId": "1", "type": "wait", "requisiteStageRefIds": []}],
        "triggers": [],
    }
    document.update(overrides)
    return document


def problems(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in validate_pipeline(KEY, document)]


# Read from Pipeline.java and PipelineMixins.java (front50-api, front50-core), written out again here
# so the table in front50_model cannot lose a field or change a type unnoticed:
# (field, Java type, a value Jackson refuses for it, a value it reads).
TYPED_FIELDS: list[tuple[str, str, Any, Any]] = [
    ("id", "String", {"uuid": "x"}, "6b7e6c1e-0000-4000-8000-000000000001"),
    ("name", "String", ["deploy"], "deploy-prod"),
    ("application", "String", {"app": "checkout"}, "checkout"),
    ("type", "String", {"kind": "templatedPipeline"}, "templatedPipeline"),
    ("schema", "String", ["v2"], "v2"),
    ("triggers", "List<Trigger>", {"type": "git"}, [{"type": "git", "enabled": True}]),
    ("index", "Integer", "first", 3),
    ("updateTs", "String", {"ms": 1}, "1712345678901"),
    ("lastModifiedBy", "String", ["alice"], "alice@example.com"),
    ("email", "String", {"to": "team@example.com"}, "team@example.com"),
    ("disabled", "Boolean", "yes", False),
    ("template", "Map<String, Object>", [1], TEMPLATE_REF),
    ("roles", "List<String>", "admins", ["admins", "deployers"]),
    ("serviceAccount", "String", {"name": "deployer"}, "deployer@managed-service-account"),
    ("executionEngine", "String", ["v3"], "v3"),
    ("stageCounter", "Integer", 2**31, 4),
    ("stages", "List<Map<String, Object>>", {"wait": {}}, []),
    ("constraints", "Map<String, Object>", "none", {"branch": "main"}),
    ("payloadConstraints", "Map<String, Object>", ["x"], {"ref": "refs/heads/main"}),
    ("keepWaitingPipelines", "Boolean", 1.5, True),
    ("limitConcurrent", "Boolean", {"on": True}, False),
    ("maxConcurrentExecutions", "Integer", 2.5e10, 5),
    ("parameterConfig", "List<Map<String, Object>>", {"version": {}}, [{"name": "version"}]),
    ("spelEvaluator", "String", {"version": 4}, "v4"),
]


def test_the_table_lists_every_typed_field_of_front50s_pipeline_with_its_java_type() -> None:
    typed = {field: java for field, java, _, _ in TYPED_FIELDS}
    assert {field: t.java for field, t in PIPELINE_FIELDS.items() if t is not JavaType.ANY} == typed
    assert PIPELINE_FIELDS["config"] is JavaType.ANY  # Object config: anything goes


@pytest.mark.parametrize(("field", "java", "wrong", "right"), TYPED_FIELDS, ids=[f[0] for f in TYPED_FIELDS])
def test_a_wrong_typed_value_is_refused_and_a_right_one_passes(
    field: str, java: str, wrong: Any, right: Any
) -> None:
    refused = problems(pipeline(**{field: wrong}))
    assert refused and all(path.split("[")[0].split(".")[0] == field for path, _ in refused)
    assert problems(pipeline(**{field: right})) == []


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        (
            "index",
            "first",
            "index",
            f"index must be a whole number from -2147483648 to 2147483647 (or its digits as text), "
            f"got the string 'first': Front50 reads Pipeline.index as Integer; {STALLS}",
        ),
        (
            "email",
            {"to": "x"},
            "email",
            "email must be text (a number or true/false is taken as text, a mapping or a list is not), "
            f"got a mapping: Front50 reads Pipeline.email as String; {STALLS}",
        ),
        (
            "roles",
            "admins",
            "roles",
            "roles must be a list of strings (a single string is not a list), got the string 'admins': "
            f"Front50 reads Pipeline.roles as List<String>; {STALLS}",
        ),
        (
            "roles",
            ["admins", {"team": "x"}],
            "roles[1]",
            "each entry of roles must be text (a number or true/false is taken as text, a mapping or a "
            f"list is not), got a mapping: Front50 reads Pipeline.roles as List<String>; {STALLS}",
        ),
        (
            "template",
            [1],
            "template",
            f"template must be a mapping, got a list: Front50 reads Pipeline.template as Map<String, Object>; {STALLS}",
        ),
        (
            "maxConcurrentExecutions",
            2**31,
            "maxConcurrentExecutions",
            f"maxConcurrentExecutions must be a whole number from -2147483648 to 2147483647 (or its digits "
            f"as text), got the number 2147483648: Front50 reads Pipeline.maxConcurrentExecutions as Integer; "
            f"{STALLS}",
        ),
    ],
)
def test_messages_name_the_field_path_the_java_type_and_the_consequence(
    field: str, value: Any, path: str, message: str
) -> None:
    assert problems(pipeline(**{field: value})) == [(path, message)]


@pytest.mark.parametrize(
    ("java_type", "accepted", "refused"),
    [
        # a JSON number or boolean into a String is coerced; an object or array fails
        (JavaType.STRING, ["x", "", 5, -1.5, True, None], [{}, [], ["x"]]),
        # numbers in int range (floats truncated), their digits as text (trimmed), blank or "null" text
        (
            JavaType.INTEGER,
            [5, -(2**31), 2**31 - 1, 1.9, -2147483648.0, "5", " 7 ", "+5", "-5", "", "  ", "null", None],
            [
                True,
                False,
                2**31,
                -(2**31) - 1,
                2147483648.0,
                "5.0",
                "five",
                "0x10",
                "1_000",
                "9" * 11,
                {},
                [5],
                [],
            ],
        ),
        # true/false, any integer (0 is false), the six spellings of true/false, blank or "null" text
        (
            JavaType.BOOLEAN,
            [
                True,
                False,
                None,
                0,
                7,
                10**30,
                "true",
                "True",
                "TRUE",
                "false",
                "False",
                " FALSE ",
                "",
                "null",
            ],
            ["yes", "tRue", "1", "on", 1.0, 0.0, [], {}, [True]],
        ),
        (JavaType.MAP, [{}, {"a": [1]}, None], [[], "", "x", 1, True]),
        (JavaType.LIST_OF_STRINGS, [[], None, ["a", 1, True, None]], ["a", "", {}, [{}], [[]]]),
        (JavaType.LIST_OF_MAPS, [[], None, [{}, None]], [{}, "x", [1], [[]], [""]]),
        (JavaType.LIST_OF_TRIGGERS, [[], None, [{"type": "git"}]], [{"type": "git"}, ["git"]]),
        (JavaType.ANY, [None, 1, "x", [], {}, [[{}]]], []),
    ],
)
def test_jackson_coercions(java_type: JavaType, accepted: list[Any], refused: list[Any]) -> None:
    assert [v for v in accepted if not java_type.accepts(v)] == []
    assert [v for v in refused if java_type.accepts(v)] == []


def nest(levels: int) -> list[Any]:
    """levels lists, each inside the one before: nest(1) == [], nest(2) == [[]]."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


DEPTH_MESSAGE = (
    f"the pipeline nests mappings and lists deeper than {MAX_DEPTH} levels, "
    "Jackson's limit when Front50 reads it; flatten it"
)


def test_nesting_up_to_jacksons_limit_passes_and_one_level_more_is_refused() -> None:
    # the pipeline itself is level 1, so config may hold MAX_DEPTH - 1 levels
    assert problems(pipeline(config=nest(MAX_DEPTH - 1))) == []
    too_deep = "config" + "[0]" * (MAX_DEPTH - 1)
    assert problems(pipeline(config=nest(MAX_DEPTH))) == [(too_deep, DEPTH_MESSAGE)]


def test_a_very_deep_document_is_reported_once_without_recursion() -> None:
    found = list(limit_problems({"config": nest(50_000)}))
    assert found == [("config" + "[0]" * (MAX_DEPTH - 1), DEPTH_MESSAGE)]


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (
            {"config": {"big": 10**MAX_NUMBER_DIGITS}},
            "config.big",
            f"a number with more than {MAX_NUMBER_DIGITS} digits is longer than Jackson reads when Front50 "
            "loads the pipeline; write it as text",
        ),
        (
            {"config": [-(10**MAX_NUMBER_DIGITS)]},
            "config[0]",
            f"a number with more than {MAX_NUMBER_DIGITS} digits is longer than Jackson reads when Front50 "
            "loads the pipeline; write it as text",
        ),
        (
            {"config": {"k" * (MAX_NAME_CHARS + 1): 1}},
            "config",
            f"a key longer than {MAX_NAME_CHARS} characters is more than Jackson reads",
        ),
        (
            {"description": "x" * (MAX_STRING_CHARS + 1)},
            "description",
            f"a text longer than {MAX_STRING_CHARS} characters is more than Jackson reads",
        ),
    ],
)
def test_parser_limits(document: dict[str, Any], path: str, message: str) -> None:
    assert list(limit_problems(document)) == [(path, message)]


def test_values_at_the_parser_limits_pass() -> None:
    document = {
        "digits": [10**MAX_NUMBER_DIGITS - 1, -(10**MAX_NUMBER_DIGITS - 1)],
        "keys": {"k" * MAX_NAME_CHARS: True},
        "text": "x" * MAX_STRING_CHARS,
    }
    assert list(limit_problems(document)) == []


def test_the_model_is_part_of_the_render_cache_fingerprint() -> None:
    # validation problems are cached with a render: a change to the table must invalidate them
    assert "pipeline_sync.front50_model" in render_cache.CODE_MODULES
