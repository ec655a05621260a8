"""Deterministic identities: pipeline ids, artifact and trigger ids, reference rewriting, byte-identical renders."""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeline_sync.catalog import load_catalog
from pipeline_sync.identity import artifact_id_for, assign_identities, pipeline_id_for, trigger_id_for
from pipeline_sync.render import Renderer
from pipeline_sync.validate import validate_pipeline

if TYPE_CHECKING:
    from conftest import MakeProject

REPO = Path(__file__).resolve().parent.parent
KEY = "svc/dev/deploy"
PID = pipeline_id_for(KEY)
UUID_TEXT = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")

PIPELINE = """\
application: someone-else
name: "deploy-{{ stack }}"
id: not-mine
expectedArtifacts:
  - displayName: chart
  - displayName: "{{ app_name }}-values"
  - displayName: pinned
    id: kept-id
triggers:
  - {type: docker, expectedArtifactIds: [chart, "{{ app_name }}-values"]}
  - {type: cron, cronExpression: "0 0 * * * ?"}
  - {type: git, id: kept-trigger}
stages:
  - refId: bake
    type: bakeManifest
    inputArtifacts: [{id: chart, account: harbor}, {id: "{{ app_name }}-values"}, {id: pinned}]
    expectedArtifacts: [{displayName: baked}]
  - refId: deploy
    type: deployManifest
    requisiteStageRefIds: [bake]
    manifestArtifactId: baked
    requiredArtifactIds: [chart, baked, kept-id, no-such-artifact]
"""


def test_pipeline_id_is_a_deterministic_lower_case_uuid_of_the_key() -> None:
    assert pipeline_id_for(KEY) == pipeline_id_for(KEY)
    assert UUID_TEXT.match(PID) and PID.lower() == PID
    assert uuid.UUID(PID).version == 5
    # The namespace must never change: every managed pipeline's id hangs on it.
    assert PID == "1410b128-22d1-5feb-89c5-b9873851306f"
    keys = ["svc/dev/deploy", "svc/prod/deploy", "svc/dev/canary", "other/dev/deploy", "svc/dev/deploy2"]
    assert len({pipeline_id_for(key) for key in keys}) == len(keys)


@pytest.mark.parametrize(
    "key",
    ["svc/dev/deploy", "", "a", "ünï/cødé/🚀", "x" * 1000, *(f"svc-{i:05d}/prod/deploy" for i in range(200))],
)
def test_pipeline_id_is_exactly_uuid5_of_the_key(key: str) -> None:
    """pipeline_id_for builds the UUID's text itself: it must be uuid5's, byte for byte."""
    assert pipeline_id_for(key) == str(uuid.uuid5(uuid.UUID("6f1c2d0e-5b7a-5e39-9a51-7a3f0c1e2b44"), key))


def test_child_ids_are_stable_and_distinct() -> None:
    assert artifact_id_for(PID, "chart") == artifact_id_for(PID, "chart")
    assert UUID_TEXT.match(artifact_id_for(PID, "chart"))
    assert artifact_id_for(PID, "chart") != artifact_id_for(PID, "values")
    assert artifact_id_for(PID, "chart") != artifact_id_for(pipeline_id_for("svc/prod/deploy"), "chart")
    assert trigger_id_for(PID, 0, "git") != trigger_id_for(PID, 1, "git")
    assert UUID_TEXT.match(artifact_id_for("adopted-0001", "chart"))  # a pinned id need not be a UUID


@pytest.fixture
def rendered(make_project: MakeProject, tmp_path: Path) -> dict[str, Any]:
    return dict(make_project(tmp_path, templates={"deploy": PIPELINE}).render().document)


def test_id_and_application_are_forced(rendered: dict[str, Any]) -> None:
    assert rendered["id"] == PID
    assert rendered["application"] == "svc"


def test_expected_artifacts_without_id_get_stable_ids(rendered: dict[str, Any]) -> None:
    artifacts = rendered["expectedArtifacts"]
    assert [a["id"] for a in artifacts] == [
        artifact_id_for(PID, "chart"),
        artifact_id_for(PID, "svc-values"),
        "kept-id",
    ]
    assert rendered["stages"][0]["expectedArtifacts"][0]["id"] == artifact_id_for(PID, "baked")


def test_references_by_display_name_are_rewritten_to_ids(rendered: dict[str, Any]) -> None:
    chart, values = artifact_id_for(PID, "chart"), artifact_id_for(PID, "svc-values")
    baked = artifact_id_for(PID, "baked")
    bake, deploy = rendered["stages"]
    assert [a["id"] for a in bake["inputArtifacts"]] == [chart, values, "kept-id"]
    assert bake["inputArtifacts"][0]["account"] == "harbor"
    assert deploy["manifestArtifactId"] == baked
    # An id stays an id; a name that matches nothing is left for validation to report.
    assert deploy["requiredArtifactIds"] == [chart, baked, "kept-id", "no-such-artifact"]
    assert rendered["triggers"][0]["expectedArtifactIds"] == [chart, values]


def test_triggers_get_stable_ids(rendered: dict[str, Any]) -> None:
    assert [t["id"] for t in rendered["triggers"]] == [
        trigger_id_for(PID, 0, "docker"),
        trigger_id_for(PID, 1, "cron"),
        "kept-trigger",
    ]


def test_a_pinned_id_replaces_the_derived_one_everywhere(make_project: MakeProject, tmp_path: Path) -> None:
    service = {"stacks": {"dev": {"pipelines": ["deploy"], "ids": {"deploy": "adopted-0001"}}}}
    doc = make_project(tmp_path, services={"svc": service}, templates={"deploy": PIPELINE}).render().document
    assert doc["id"] == "adopted-0001"
    assert doc["expectedArtifacts"][0]["id"] == artifact_id_for("adopted-0001", "chart")
    assert doc["triggers"][0]["id"] == trigger_id_for("adopted-0001", 0, "docker")


def test_assign_identities_is_idempotent() -> None:
    pipeline = {
        "expectedArtifacts": [{"displayName": "chart"}],
        "triggers": [{"type": "docker", "expectedArtifactIds": ["chart"]}],
        "stages": [{"refId": "a", "inputArtifacts": [{"id": "chart"}], "manifestArtifactId": "chart"}],
    }
    assign_identities(pipeline, PID, "svc")
    once = copy.deepcopy(pipeline)
    assign_identities(pipeline, PID, "svc")
    assert pipeline == once


def test_assign_identities_survives_malformed_shapes() -> None:
    pipeline: dict[str, Any] = {
        "expectedArtifacts": "oops",
        "triggers": [None, 3],
        "stages": {"not": "a list"},
    }
    assign_identities(pipeline, PID, "svc")
    assert pipeline["id"] == PID and pipeline["stages"] == {"not": "a list"}


def test_two_renderers_give_byte_identical_json(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(tmp_path, templates={"deploy": PIPELINE})
    first, second = project.render(), project.render()
    assert first.canonical == second.canonical
    assert first.digest == second.digest
    assert json.loads(first.canonical) == dict(first.document)


def test_example_catalog_renders_byte_identically_without_paths_or_timestamps() -> None:
    def render_all() -> dict[str, str]:
        catalog = load_catalog(REPO / "catalog", REPO / "templates")
        renderer = Renderer(REPO / "templates", catalog)
        return {key: renderer.render(target).canonical for key, target in catalog.targets.items()}

    first, second = render_all(), render_all()
    assert first == second and len(first) == 13
    for text in first.values():
        assert str(REPO) not in text and "/work/" not in text and "/tmp/" not in text
        for field in ("updateTs", "lastModified", "lastModifiedBy", "createTs", "index"):
            assert f'"{field}"' not in text
        assert not re.search(r"\b20\d\d-\d\d-\d\d", text)  # no dates
        assert not re.search(r"\b1[6-9]\d{11}\b", text)  # no epoch milliseconds


REQUIRED_ARTIFACTS = """\
application: "{{ app_name }}"
name: "deploy-{{ stack }}"
expectedArtifacts:
  - displayName: chart
  - {displayName: pinned, id: kept-id}
stages:
  - refId: deploy
    type: deployManifest
    source: text
    manifests: [{kind: ConfigMap}]
    requiredArtifacts:
      - {expectedArtifactId: chart}
      - {expectedArtifactId: kept-id}
      - {expectedArtifactId: no-such-artifact}
      - {artifact: {type: docker/image, name: registry/app, reference: registry/app:1}}
      - {expectedArtifactId: null, artifact: {type: docker/image, name: registry/other}}
"""


def test_required_artifacts_expected_artifact_id_is_a_reference(
    make_project: MakeProject, tmp_path: Path
) -> None:
    """ManifestEvaluator binds requiredArtifacts[].expectedArtifactId whatever the manifest source:
    a displayName there is rewritten to the id, and one that names nothing is reported."""
    project = make_project(tmp_path, templates={"deploy": REQUIRED_ARTIFACTS})
    document = dict(project.render().document)
    required = document["stages"][0]["requiredArtifacts"]
    assert [item.get("expectedArtifactId") for item in required] == [
        artifact_id_for(PID, "chart"),
        "kept-id",
        "no-such-artifact",
        None,
        None,
    ]
    assert [(p.path, p.message) for p in validate_pipeline(KEY, document)] == [
        (
            "stages[0].requiredArtifacts[2].expectedArtifactId",
            "'no-such-artifact' names no expected artifact (by id or displayName); "
            "declare it in expectedArtifacts or fix the reference",
        )
    ]


@pytest.mark.parametrize("required", ["not-a-list", [None, 3, "chart", {"expectedArtifactId": 5}]])
def test_malformed_required_artifacts_are_not_references(required: object) -> None:
    pipeline: dict[str, Any] = {
        "expectedArtifacts": [{"displayName": "chart"}],
        "stages": [{"refId": "a", "type": "deployManifest", "requiredArtifacts": copy.deepcopy(required)}],
    }
    assign_identities(pipeline, PID, "svc")
    assert pipeline["stages"][0]["requiredArtifacts"] == required
