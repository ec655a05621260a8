"""Structural validation of rendered pipelines (spinnaker.validate_pipeline) and of the fleet."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline_sync.identity import assign_identities, pipeline_id_for
from pipeline_sync.validate import Problem, validate_fleet, validate_pipeline

KEY = "checkout/prod/deploy"
ARTIFACT_ID = "0b0c6f8e-0000-4000-8000-000000000001"


def stage(ref_id: Any, *requisites: Any, **fields: Any) -> dict[str, Any]:
    return {"refId": ref_id, "type": "wait", "requisiteStageRefIds": list(requisites), **fields}


def pipeline(**overrides: Any) -> dict[str, Any]:
    """A small valid pipeline, as identity assignment leaves it; keyword arguments replace fields."""
    document: dict[str, Any] = {
        "id": pipeline_id_for(KEY),
        "name": "deploy-prod",
        "application": "checkout",
        "keepWaitingPipelines": False,
        "limitConcurrent": True,
        "parameterConfig": [{"name": "version", "required": True}],
        "expectedArtifacts": [{"id": ARTIFACT_ID, "displayName": "chart"}],
        "triggers": [{"type": "cron", "cronExpression": "0 0 * * * ?", "enabled": True}],
        "stages": [
            stage("build"),
            stage("deploy", "build", type="deployManifest", manifestArtifactId=ARTIFACT_ID),
        ],
    }
    document.update(overrides)
    return document


def drop(*keys: str) -> dict[str, Any]:
    """The small valid pipeline without some top-level keys."""
    document = pipeline()
    for key in keys:
        del document[key]
    return document


def problems(document: Any) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in validate_pipeline(KEY, document)]


def paths(document: Any) -> list[str]:
    return [path for path, _ in problems(document)]


def test_valid_pipeline_has_no_problems() -> None:
    assert validate_pipeline(KEY, pipeline()) == []


def test_empty_stages_are_allowed() -> None:
    assert validate_pipeline(KEY, pipeline(stages=[])) == []


def test_problem_str_names_partition_and_path() -> None:
    assert str(Problem(KEY, "stages[0].refId", "bad")) == "[checkout/prod/deploy] stages[0].refId: bad"
    assert str(Problem(KEY, "", "bad")) == "[checkout/prod/deploy] bad"


MISSING = "got nothing (the key is missing)"
BY_NAME = "Front50 and Deck find pipelines by name: set it in the template"
STALLS = "Front50 could not load this pipeline, and one it cannot load stops its cache refresh for every application"
DECK = "which Deck forbids in pipeline names (\\ ^ / ? % #); use '-' instead"


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (drop("name"), "name", f"name must be a non-empty string, {MISSING}; {BY_NAME}"),
        (pipeline(name=""), "name", f"name must be a non-empty string, got an empty string; {BY_NAME}"),
        (
            pipeline(application=None),
            "application",
            "application must be a non-empty string, got null; the renderer sets it to the service's application",
        ),
        (
            pipeline(id=7),
            "id",
            "id must be a non-empty string, got the number 7; "
            "the renderer assigns it (or the catalog pins one): keep it",
        ),
        (pipeline(name="deploy/prod"), "name", f"name 'deploy/prod' contains '/', {DECK}"),
        (pipeline(name="a#b?c#"), "name", f"name 'a#b?c#' contains '#', '?', {DECK}"),
        (
            pipeline(disabled="yes"),
            "disabled",
            f"disabled must be true or false, got the string 'yes': Front50 reads Pipeline.disabled as Boolean; {STALLS}",
        ),
        (
            pipeline(limitConcurrent=1.0),
            "limitConcurrent",
            f"limitConcurrent must be true or false, got the number 1.0: "
            f"Front50 reads Pipeline.limitConcurrent as Boolean; {STALLS}",
        ),
    ],
)
def test_top_level_fields(document: dict[str, Any], path: str, message: str) -> None:
    assert problems(document) == [(path, message)]


STAGES_LIST = "stages must be a list of stages (an empty list is allowed)"
REQUISITE = "stages[1].requisiteStageRefIds"


@pytest.mark.parametrize(
    ("stages", "path", "message"),
    [
        (None, "stages", f"{STAGES_LIST}, got null"),
        ({"build": {}}, "stages", f"{STAGES_LIST}, got a mapping"),
        ([stage("a"), "b"], "stages[1]", "a stage must be a mapping with type and refId, got the string 'b'"),
        (
            [stage("a", type="")],
            "stages[0].type",
            "type must be a non-empty string naming the stage type, such as deployManifest, "
            "got an empty string",
        ),
        (
            [stage(1)],
            "stages[0].refId",
            'refId must be a string, got the number 1; use strings: refId: "1" '
            "(Orca reads refIds as text and would never match it)",
        ),
        (
            [stage("a"), stage([])],
            "stages[1].refId",
            "refId must be a non-empty string, got a list; other stages name it in requisiteStageRefIds",
        ),
        (
            [stage("a"), {"type": "wait"}],
            "stages[1].refId",
            "this stage has no refId but stages[0] has one; Orca numbers stages itself only when "
            "no stage has a refId, so give every stage a refId (or remove them all)",
        ),
        (
            [stage("a"), stage("a")],
            "stages[1].refId",
            "refId 'a' is already used by stages[0]; refIds must be unique, "
            "or requisiteStageRefIds cannot tell the stages apart",
        ),
        (
            [stage("a"), stage("b", "zz")],
            f"{REQUISITE}[0]",
            "requisite 'zz' names no stage of this pipeline; known refIds: 'a', 'b'",
        ),
        (
            [stage("1"), stage("2", 1)],
            f"{REQUISITE}[0]",
            'requisite must be a string refId, got the number 1; use strings: "1"',
        ),
        ([stage("a"), stage("b", None)], f"{REQUISITE}[0]", "requisite must be a string refId, got null"),
        (
            [stage("a"), stage("b", requisiteStageRefIds="a")],
            REQUISITE,
            "requisiteStageRefIds must be a list of refIds (use [] for none), got the string 'a'",
        ),
    ],
)
def test_stage_rules(stages: Any, path: str, message: str) -> None:
    assert problems(pipeline(stages=stages)) == [(path, message)]


def test_missing_stages() -> None:
    assert problems(drop("stages")) == [("stages", f"{STAGES_LIST}, {MISSING}")]


def test_cycle_of_three_is_drawn_in_order() -> None:
    stages = [stage("start"), stage("a", "start", "c"), stage("b", "a"), stage("c", "b")]
    assert problems(pipeline(stages=stages)) == [
        (
            "stages[1].requisiteStageRefIds[1]",
            "the stages form a cycle a -> b -> c -> a (each waits for the one before it), which Orca refuses "
            "as 'Invalid stage relationships'; remove one of these requisites",
        )
    ]


def test_self_loop() -> None:
    stages = [stage("start"), stage("a", "start", "a")]
    assert problems(pipeline(stages=stages)) == [
        (
            "stages[1].requisiteStageRefIds[1]",
            "stage 'a' waits for itself (a -> a), so Orca would never start it; "
            "remove it from its requisiteStageRefIds",
        )
    ]


def test_missing_root_stage_and_its_cycle() -> None:
    found = problems(pipeline(stages=[stage("a", "b"), stage("b", "a")]))
    assert (
        "stages",
        "no stage can start: every stage waits for another in requisiteStageRefIds; "
        "give the first stage requisiteStageRefIds: []",
    ) in found
    assert any("a cycle a -> b -> a" in message for _, message in found)


@pytest.mark.parametrize("root", [stage("a"), {"refId": "a", "type": "wait"}])
def test_missing_or_empty_requisites_make_a_root(root: dict[str, Any]) -> None:
    assert problems(pipeline(stages=[stage("b", "a"), root])) == []


def test_long_chain_does_not_recurse() -> None:
    chain = [stage("0")] + [stage(str(i), str(i - 1)) for i in range(1, 5000)]
    chain[0]["requisiteStageRefIds"] = ["4999"]
    chain.append(stage("root"))
    found = problems(pipeline(stages=chain))
    assert len(found) == 1 and found[0][1].startswith("the stages form a cycle 0 -> 1 -> 2 -> ")


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("manifestArtifactId", "nope", "stages[1].manifestArtifactId"),
        ("requiredArtifactIds", [ARTIFACT_ID, "nope"], "stages[1].requiredArtifactIds[1]"),
        ("inputArtifacts", [{"id": "nope", "account": "a"}], "stages[1].inputArtifacts[0].id"),
        ("buildDefinitionArtifact", {"artifactId": "nope"}, "stages[1].buildDefinitionArtifact.artifactId"),
        ("stackArtifactId", "nope", "stages[1].stackArtifactId"),
    ],
)
def test_dangling_artifact_reference(field: str, value: Any, path: str) -> None:
    document = pipeline()
    del document["stages"][1]["manifestArtifactId"]
    document["stages"][1].update({field: value, "source": "artifact", "buildDefinitionSource": "artifact"})
    assert problems(document) == [
        (
            path,
            "'nope' names no expected artifact (by id or displayName); "
            "declare it in expectedArtifacts or fix the reference",
        )
    ]


def test_trigger_artifact_reference_and_stage_level_artifact() -> None:
    document = pipeline()
    document["stages"][0]["expectedArtifacts"] = [{"id": "baked", "displayName": "baked"}]
    document["stages"][1]["manifestArtifactId"] = "baked"
    document["triggers"][0]["expectedArtifactIds"] = ["baked", "gone"]
    assert problems(document) == [
        (
            "triggers[0].expectedArtifactIds[1]",
            "'gone' names no expected artifact (by id or displayName); "
            "declare it in expectedArtifacts or fix the reference",
        )
    ]


def test_display_name_refs_resolve_after_identity_assignment() -> None:
    document = pipeline(expectedArtifacts=[{"displayName": "chart"}])
    document["stages"][1]["manifestArtifactId"] = "chart"
    assign_identities(document, pipeline_id_for(KEY), "checkout")
    assert problems(document) == []


@pytest.mark.parametrize(
    ("artifacts", "expected"),
    [
        (
            [{"id": "x", "displayName": "a"}, {"id": "x", "displayName": "b"}],
            ("expectedArtifacts[1].id", "expected artifact id 'x' is already used by expectedArtifacts[0]"),
        ),
        (
            [{"id": "x", "displayName": "a"}, {"id": "y", "displayName": "a"}],
            (
                "expectedArtifacts[1].displayName",
                "displayName 'a' is already used by expectedArtifacts[0]; displayNames must be unique",
            ),
        ),
        (
            [{"matchArtifact": {}}],
            (
                "expectedArtifacts[0].id",
                "an expected artifact needs an id, or a displayName to derive one from",
            ),
        ),
    ],
)
def test_expected_artifact_identity(artifacts: list[dict[str, Any]], expected: tuple[str, str]) -> None:
    document = pipeline(expectedArtifacts=artifacts)
    document["stages"][1].pop("manifestArtifactId")
    assert problems(document) == [expected]


def test_duplicate_artifact_across_pipeline_and_stage() -> None:
    document = pipeline()
    document["stages"][1]["expectedArtifacts"] = [{"id": ARTIFACT_ID, "displayName": "other"}]
    assert paths(document) == ["stages[1].expectedArtifacts[0].id"]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (
            [{"name": "version"}, {"name": "version"}],
            (
                "parameterConfig[1].name",
                "parameter 'version' is already defined by parameterConfig[0]; "
                "parameter names must be unique",
            ),
        ),
        (
            [{"label": "Version"}],
            (
                "parameterConfig[0].name",
                "a parameter needs a non-empty string name, got nothing (the key is missing)",
            ),
        ),
        (
            ["version"],
            (
                "parameterConfig[0]",
                "each entry of parameterConfig must be a mapping, got the string 'version'",
            ),
        ),
        (
            {"version": {}},
            ("parameterConfig", "parameterConfig must be a list (use [] for none), got a mapping"),
        ),
    ],
)
def test_parameter_config(parameters: Any, expected: tuple[str, str]) -> None:
    assert problems(pipeline(parameterConfig=parameters)) == [expected]


TRIGGER_TYPE = "type must be a non-empty string such as git, cron or pipeline"


@pytest.mark.parametrize(
    ("triggers", "path", "message"),
    [
        (None, "triggers", "triggers must be a list (use [] for none), got null"),
        ([3], "triggers[0]", "each entry of triggers must be a mapping, got the number 3"),
        ([{"enabled": True}], "triggers[0].type", f"{TRIGGER_TYPE}, {MISSING}"),
        ([{"type": ["cron"]}], "triggers[0].type", f"{TRIGGER_TYPE}, got a list"),
        (
            [{"type": "git", "enabled": "true"}],
            "triggers[0].enabled",
            "enabled must be true or false, got the string 'true'; Front50 reads text 'true'/'false' and "
            "anything else as false, while Orca's DependentPipelineExecutionListener takes any non-empty "
            "value, the text 'false' too, as true",
        ),
        (
            [{"type": "pipeline", "application": "a", "pipeline": "p", "status": ["successful", None]}],
            "triggers[0].status[1]",
            "a pipeline trigger's status list cannot hold null (Front50's Trigger.getStatus() copies the "
            "list with List.copyOf, which refuses null); use successful, failed or canceled",
        ),
        (
            [{"type": "cron"}],
            "triggers[0].cronExpression",
            f"cronExpression must be a non-empty string in a cron trigger, {MISSING}",
        ),
        (
            [{"type": "pipeline", "application": "checkout", "pipeline": 5}],
            "triggers[0].pipeline",
            "pipeline must be a non-empty string in a pipeline trigger, got the number 5",
        ),
        (
            [{"type": "git", "expectedArtifactIds": "chart"}],
            "triggers[0].expectedArtifactIds",
            "expectedArtifactIds must be a list (use [] for none), got the string 'chart'",
        ),
    ],
)
def test_triggers(triggers: Any, path: str, message: str) -> None:
    assert problems(pipeline(triggers=triggers)) == [(path, message)]


def test_pipeline_trigger_needs_application_and_pipeline() -> None:
    assert paths(pipeline(triggers=[{"type": "pipeline"}])) == [
        "triggers[0].application",
        "triggers[0].pipeline",
    ]


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        "pipeline",
        {},
        {"stages": [None, 1, [], {"refId": {}, "requisiteStageRefIds": [{}], "inputArtifacts": 5}]},
        {"stages": 5, "triggers": 5, "expectedArtifacts": 5, "parameterConfig": "x"},
        {"stages": [{"refId": "a", "requisiteStageRefIds": ["a"], "expectedArtifacts": [{"id": ["x"]}]}]},
        {
            "triggers": [{"type": "cron", "expectedArtifactIds": [None, 1]}],
            "stages": [{"requiredArtifactIds": 3}],
        },
        {"name": ["x"], "application": {"a": 1}, "id": None, "disabled": [], "stages": True},
    ],
)
def test_weird_input_reports_instead_of_raising(document: Any) -> None:
    before = copy.deepcopy(document)
    assert all(isinstance(p, Problem) for p in validate_pipeline(KEY, document))
    assert document == before


def test_non_mapping_pipeline() -> None:
    assert problems(None) == [("", "a pipeline must be a mapping, got null")]


def test_yaml_alias_artifact_gets_both_paths() -> None:
    shared = {"id": "x", "displayName": "x"}
    document = pipeline(expectedArtifacts=[shared, shared])
    document["stages"][1].pop("manifestArtifactId")
    assert paths(document) == ["expectedArtifacts[1].id", "expectedArtifacts[1].displayName"]


# --- accept what Spinnaker accepts ------------------------------------------------------------


@pytest.mark.parametrize(
    "stages",
    [
        [{"type": "wait", "name": "first"}, {"type": "deployManifest", "name": "second"}],
        [{"type": "wait", "refId": None}, {"type": "wait"}],
        # Orca replaces the requisites of a linear pipeline, so even dangling ones do no harm
        [{"type": "wait", "requisiteStageRefIds": ["gone"]}, {"type": "wait", "requisiteStageRefIds": 5}],
    ],
)
def test_pipeline_whose_stages_have_no_refid_is_linear_and_valid(stages: list[dict[str, Any]]) -> None:
    assert problems(pipeline(stages=stages)) == []


def test_linear_pipeline_still_needs_stage_types() -> None:
    assert problems(pipeline(stages=[{"name": "untyped"}])) == [
        (
            "stages[0].type",
            f"type must be a non-empty string naming the stage type, such as deployManifest, {MISSING}",
        )
    ]


def test_every_stage_without_refid_is_named_in_a_mixed_pipeline() -> None:
    stages = [{"type": "wait"}, stage("b"), {"type": "wait", "refId": None}]
    assert paths(pipeline(stages=stages)) == ["stages[0].refId", "stages[2].refId"]
    assert "but stages[1] has one" in problems(pipeline(stages=stages))[0][1]


def test_null_requisites_mean_none() -> None:
    assert problems(pipeline(stages=[stage("a", requisiteStageRefIds=None), stage("b", "a")])) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limitConcurrent", 1),
        ("limitConcurrent", "TRUE"),
        ("keepWaitingPipelines", None),
        ("disabled", " false "),
        ("index", "3"),
        ("email", 42),
        ("roles", ["admins", 7, None]),
        ("spelEvaluator", True),
        ("template", None),
        ("config", [1, {"a": 2}]),
    ],
)
def test_values_jackson_coerces_are_accepted(field: str, value: Any) -> None:
    assert problems(pipeline(**{field: value})) == []


def find_artifact_stage(**fields: Any) -> dict[str, Any]:
    legacy = {"id": "found", "displayName": "found", "matchArtifact": {"type": "docker/image"}}
    return {
        "refId": "find",
        "type": "findArtifactFromExecution",
        "application": "checkout",
        "pipeline": "3f1c0b6a-0000-4000-8000-000000000002",
        "executionOptions": {"successful": True},
        "expectedArtifact": legacy,
        "requisiteStageRefIds": [],
        **fields,
    }


def test_legacy_singular_expected_artifact_is_declared() -> None:
    later = stage("deploy", "find", type="deployManifest", source="artifact", manifestArtifactId="found")
    assert problems(pipeline(stages=[find_artifact_stage(), later])) == []


@pytest.mark.parametrize(
    "find",
    [
        # Orca and Deck read the singular one only while the stage has no expectedArtifacts list
        find_artifact_stage(expectedArtifacts=[{"id": "other", "displayName": "other"}]),
        # and only on a findArtifactFromExecution stage
        find_artifact_stage(type="wait"),
    ],
)
def test_singular_expected_artifact_that_orca_ignores_declares_nothing(find: dict[str, Any]) -> None:
    later = stage("deploy", "find", type="deployManifest", source="artifact", manifestArtifactId="found")
    assert paths(pipeline(stages=[find, later])) == ["stages[1].manifestArtifactId"]


def test_legacy_singular_expected_artifact_is_checked_like_the_others() -> None:
    find = find_artifact_stage(expectedArtifact={"id": ARTIFACT_ID, "displayName": "again"})
    assert problems(pipeline(stages=[find])) == [
        (
            "stages[0].expectedArtifact.id",
            f"expected artifact id {ARTIFACT_ID!r} is already used by expectedArtifacts[0]",
        )
    ]


def test_legacy_singular_expected_artifact_gets_an_id_and_its_references_follow() -> None:
    find = find_artifact_stage(expectedArtifact={"displayName": "image", "matchArtifact": {}})
    later = stage("deploy", "find", type="deployManifest", source="artifact", manifestArtifactId="image")
    document = pipeline(stages=[find, later])
    assign_identities(document, pipeline_id_for(KEY), "checkout")
    given_id = document["stages"][0]["expectedArtifact"]["id"]
    assert given_id and document["stages"][1]["manifestArtifactId"] == given_id
    assert problems(document) == []


STALE = "stale-artifact-id"


@pytest.mark.parametrize(
    ("fields", "checked"),
    [
        ({"type": "deployManifest", "source": "text", "manifestArtifactId": STALE}, False),
        ({"type": "deployManifest", "source": "artifact", "manifestArtifactId": STALE}, True),
        ({"type": "patchManifest", "source": "text", "manifestArtifactId": STALE}, False),
        ({"type": "patchManifest", "manifestArtifactId": STALE}, True),
        ({"type": "runJobManifest", "manifestArtifactId": STALE}, False),
        ({"type": "runJobManifest", "source": "artifact", "manifestArtifactId": STALE}, True),
        # the source does not change requiredArtifactIds: ManifestEvaluator always binds them
        ({"type": "deployManifest", "source": "text", "requiredArtifactIds": [STALE]}, True),
        ({"type": "deployCloudFormation", "source": "text", "stackArtifactId": STALE}, False),
        ({"type": "deployCloudFormation", "stackArtifactId": STALE}, False),
        ({"type": "deployCloudFormation", "source": "artifact", "stackArtifactId": STALE}, True),
        ({"type": "googleCloudBuild", "buildDefinitionArtifact": {"artifactId": STALE}}, False),
        (
            {
                "type": "googleCloudBuild",
                "buildDefinitionSource": "trigger",
                "buildDefinitionArtifact": {"artifactId": STALE},
            },
            False,
        ),
        (
            {
                "type": "googleCloudBuild",
                "buildDefinitionSource": "ARTIFACT",
                "buildDefinitionArtifact": {"artifactId": STALE},
            },
            True,
        ),
        ({"type": "bakeManifest", "inputArtifact": {"id": STALE}}, True),
        ({"type": "bakeManifest", "inputArtifacts": [], "inputArtifact": {"id": STALE}}, True),
        (
            {"type": "bakeManifest", "inputArtifacts": [{"id": ARTIFACT_ID}], "inputArtifact": {"id": STALE}},
            False,
        ),
        ({"type": "wait", "inputArtifact": {"id": STALE}}, False),
    ],
)
def test_references_orca_ignores_for_the_chosen_source_are_not_checked(
    fields: dict[str, Any], checked: bool
) -> None:
    document = pipeline(
        stages=[stage("build"), {"refId": "deploy", "requisiteStageRefIds": ["build"], **fields}]
    )
    found = problems(document)
    assert len(found) == checked
    if checked:
        assert found[0][1].startswith(f"{STALE!r} names no expected artifact")


def test_ignored_reference_is_not_rewritten_by_identity() -> None:
    document = pipeline(expectedArtifacts=[{"displayName": "chart"}])
    document["stages"][1].update(source="text", manifestArtifactId="chart")
    assign_identities(document, pipeline_id_for(KEY), "checkout")
    assert document["stages"][1]["manifestArtifactId"] == "chart"  # Orca ignores it: left as written
    document["stages"][1]["source"] = "artifact"
    assign_identities(document, pipeline_id_for(KEY), "checkout")
    assert document["stages"][1]["manifestArtifactId"] == document["expectedArtifacts"][0]["id"]


def fleet_member(name: str, application: str = "checkout", pipeline_id: str | None = None) -> dict[str, Any]:
    return {
        "id": pipeline_id or pipeline_id_for(f"{application}/{name}"),
        "name": name,
        "application": application,
    }


def test_fleet_name_collision_is_case_insensitive_and_reported_on_both() -> None:
    found = validate_fleet(
        {
            "checkout/dev/deploy": fleet_member("Deploy"),
            "checkout/prod/deploy": fleet_member("deploy "),
            "checkout/prod/deploy-canary": fleet_member("deploy"),
            "payments/prod/deploy": fleet_member("deploy", application="payments"),
        }
    )
    assert list(found) == ["checkout/dev/deploy", "checkout/prod/deploy-canary"]
    assert [str(p) for p in found["checkout/dev/deploy"]] == [
        "[checkout/dev/deploy] name: application 'checkout' already has a pipeline named 'Deploy' in "
        "'checkout/prod/deploy-canary' (Front50 refuses a second pipeline of one name, compared case-insensitively); "
        "give each its own name, e.g. put {{ stack }} in the template's name"
    ]
    assert "named 'deploy' in 'checkout/dev/deploy'" in found["checkout/prod/deploy-canary"][0].message


def test_fleet_application_compared_case_insensitively() -> None:
    found = validate_fleet(
        {"a/dev/x": fleet_member("x", "Checkout"), "b/dev/x": fleet_member("x", "checkout")}
    )
    assert sorted(found) == ["a/dev/x", "b/dev/x"]


def test_fleet_id_collision_names_the_other_key() -> None:
    found = validate_fleet(
        {
            "checkout/prod/deploy": fleet_member("deploy", pipeline_id="legacy-id"),
            "payments/prod/deploy": fleet_member("deploy", "payments", pipeline_id="LEGACY-ID"),
        }
    )
    assert found == {
        "checkout/prod/deploy": [
            Problem(
                "checkout/prod/deploy",
                "id",
                "id 'legacy-id' is also the id of 'payments/prod/deploy'; every pipeline needs its own id, "
                "so if the catalog pins this id, pin it on only one target",
            )
        ],
        "payments/prod/deploy": [
            Problem(
                "payments/prod/deploy",
                "id",
                "id 'LEGACY-ID' is also the id of 'checkout/prod/deploy'; every pipeline needs its own id, "
                "so if the catalog pins this id, pin it on only one target",
            )
        ],
    }


def test_fleet_reports_name_and_id_together() -> None:
    same = fleet_member("deploy", pipeline_id="one")
    found = validate_fleet({"a/b/c": same, "a/b/d": dict(same)})
    assert [p.path for p in found["a/b/c"]] == ["name", "id"]


def test_fleet_without_collisions_and_with_odd_members() -> None:
    pipelines: dict[str, Any] = {
        f"svc{i}/prod/deploy": fleet_member("deploy", f"svc{i}") for i in range(10_000)
    }
    pipelines["odd/prod/a"] = {"name": None, "id": 3}
    pipelines["odd/prod/b"] = None
    assert validate_fleet(pipelines) == {}


def test_large_fleet_collision_names_a_few_others() -> None:
    pipelines = {f"svc/s{i:04}/deploy": fleet_member("deploy", "svc", f"id-{i}") for i in range(5000)}
    found = validate_fleet(pipelines)
    assert len(found) == 5000
    assert found["svc/s0000/deploy"][0].message.startswith(
        "application 'svc' already has a pipeline named 'deploy' in "
        "'svc/s0001/deploy', 'svc/s0002/deploy', 'svc/s0003/deploy' and 4996 more"
    )
