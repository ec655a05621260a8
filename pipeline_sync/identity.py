"""Deterministic identities: pipeline ids, expected-artifact ids, trigger ids, and reference rewriting."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

# Never change: every managed pipeline id is derived from it.
PIPELINE_NAMESPACE = uuid.UUID("6f1c2d0e-5b7a-5e39-9a51-7a3f0c1e2b44")
_NAMESPACE_BYTES = PIPELINE_NAMESPACE.bytes

# Stage fields holding expected-artifact ids (reference/front50.md); dotted = nested.
STAGE_ARTIFACT_ID_FIELDS = (
    "manifestArtifactId",
    "expectedArtifactId",
    "stackArtifactId",
    "pipelinesArtifactId",
)
STAGE_ARTIFACT_ID_LIST_FIELDS = ("requiredArtifactIds", "packageArtifactIds")
# The stage type whose singular `expectedArtifact` Orca still reads when `expectedArtifacts` is absent
# (orca-clouddriver FindArtifactFromExecutionContext; deck FindArtifactFromExecutionStageConfig).
LEGACY_EXPECTED_ARTIFACT_STAGE = "findArtifactFromExecution"
# A trigger that says `pipelineSyncNoId: true` gets no id (the key itself is dropped): `import`
# writes it for triggers a live pipeline has without one, so adopting it changes nothing else.
KEEP_WITHOUT_ID = "pipelineSyncNoId"


def pipeline_id_for(key: str) -> str:
    """The managed id of partition key service/stack/template: a lower-case UUID.

    str(uuid.uuid5(PIPELINE_NAMESPACE, key)), built without the UUID object (a plan of one key
    derives the id of every target in the fleet for its collision check)."""
    return _uuid_text(_uuid5_bytes(_NAMESPACE_BYTES, key))


def _uuid5_bytes(namespace: bytes, name: str) -> bytes:
    """uuid.uuid5(UUID(bytes=namespace), name).bytes, without the UUID objects."""
    digest = bytearray(hashlib.sha1(namespace + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return bytes(digest)


def _uuid_text(raw: bytes) -> str:
    """str(uuid.UUID(bytes=raw))."""
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@functools.lru_cache(maxsize=1024)
def _parent_bytes(pipeline_id: str) -> bytes:
    """The namespace of a pipeline's artifact and trigger ids: its id as a UUID (any spelling
    uuid.UUID reads), else the UUID derived from it."""
    try:
        return uuid.UUID(pipeline_id).bytes
    except ValueError:
        return _uuid5_bytes(_NAMESPACE_BYTES, pipeline_id)


def _child_id(pipeline_id: str, kind: str, name: str) -> str:
    return _uuid_text(_uuid5_bytes(_parent_bytes(pipeline_id), f"{kind}/{name}"))


def artifact_id_for(pipeline_id: str, display_name: str) -> str:
    return _child_id(pipeline_id, "artifact", display_name)


def trigger_id_for(pipeline_id: str, index: int, trigger_type: str) -> str:
    return _child_id(pipeline_id, "trigger", f"{index}/{trigger_type}")


def expected_artifacts(pipeline: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every expected artifact: pipeline-level, then stage-level (a legacy singular one included)."""
    yield from _dicts(pipeline.get("expectedArtifacts"))
    for stage in _dicts(pipeline.get("stages")):
        yield from _dicts(stage.get("expectedArtifacts"))
        legacy = legacy_expected_artifact(stage)
        if legacy is not None:
            yield legacy


def legacy_expected_artifact(stage: dict[str, Any]) -> dict[str, Any] | None:
    """The singular `expectedArtifact` a findArtifactFromExecution stage declares, when Orca reads it:
    only while the stage has no `expectedArtifacts` list (null counts as none)."""
    legacy = stage.get("expectedArtifact")
    is_legacy_stage = stage.get("type") == LEGACY_EXPECTED_ARTIFACT_STAGE
    if is_legacy_stage and stage.get("expectedArtifacts") is None and isinstance(legacy, dict):
        return legacy
    return None


def artifact_references(pipeline: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(path, container, index-or-key) of every field that holds an expected-artifact id Orca reads.

    A field Orca ignores given the stage's chosen source (see orca_reads) is not a reference.
    """
    for s_index, stage in enumerate(_list(pipeline.get("stages"))):
        if isinstance(stage, dict):
            yield from _stage_references(f"stages[{s_index}]", stage)
    for t_index, trigger in enumerate(_list(pipeline.get("triggers"))):
        if not isinstance(trigger, dict):
            continue
        values = trigger.get("expectedArtifactIds")
        if isinstance(values, list):
            for i, value in enumerate(values):
                if isinstance(value, str):
                    yield f"triggers[{t_index}].expectedArtifactIds[{i}]", values, i


def _stage_references(base: str, stage: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    for name in STAGE_ARTIFACT_ID_FIELDS:
        if isinstance(stage.get(name), str) and orca_reads(stage, name):
            yield f"{base}.{name}", stage, name
    for name in STAGE_ARTIFACT_ID_LIST_FIELDS:
        values = stage.get(name)
        if isinstance(values, list):
            for i, value in enumerate(values):
                if isinstance(value, str):
                    yield f"{base}.{name}[{i}]", values, i
    for i, item in enumerate(_list(stage.get("requiredArtifacts"))):
        # ManifestEvaluator binds each BindArtifact by expectedArtifactId whenever it is set.
        if isinstance(item, dict) and isinstance(item.get("expectedArtifactId"), str):
            yield f"{base}.requiredArtifacts[{i}].expectedArtifactId", item, "expectedArtifactId"
    build = stage.get("buildDefinitionArtifact")
    build_id = build.get("artifactId") if isinstance(build, dict) else None
    if isinstance(build_id, str) and orca_reads(stage, "buildDefinitionArtifact.artifactId"):
        yield f"{base}.buildDefinitionArtifact.artifactId", build, "artifactId"
    for i, item in enumerate(_list(stage.get("inputArtifacts"))):
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            yield f"{base}.inputArtifacts[{i}].id", item, "id"
    single = stage.get("inputArtifact")
    single_id = single.get("id") if isinstance(single, dict) else None
    if isinstance(single_id, str) and orca_reads(stage, "inputArtifact.id"):
        yield f"{base}.inputArtifact.id", single, "id"


def orca_reads(stage: dict[str, Any], field: str) -> bool:
    """Whether Orca reads an artifact-reference field of stage, given the source the stage chose.

    - manifestArtifactId: ManifestEvaluator (deployManifest, patchManifest, runJobManifest) reads
      it only for `source: artifact`; runJobManifest's source defaults to text.
    - stackArtifactId: DeployCloudFormationTask reads it only for `source: artifact`.
    - buildDefinitionArtifact.artifactId: StartGoogleCloudBuildTask reads it only when
      `buildDefinitionSource` is artifact (any case).
    - inputArtifact.id: BakeManifestContext (bakeManifest, Kustomize's singular input) reads it
      only when `inputArtifacts` is absent or empty.
    Every other field is read whatever the source: requiredArtifactIds and
    requiredArtifacts[].expectedArtifactId (ManifestEvaluator.getRequiredArtifacts) too.
    """
    source = stage.get("source")
    if field == "manifestArtifactId":
        return source != "text" and not (source is None and stage.get("type") == "runJobManifest")
    if field == "stackArtifactId":
        return source == "artifact"
    if field == "buildDefinitionArtifact.artifactId":
        chosen = stage.get("buildDefinitionSource")
        return isinstance(chosen, str) and chosen.upper() == "ARTIFACT"
    if field == "inputArtifact.id":
        return stage.get("type") == "bakeManifest" and not _list(stage.get("inputArtifacts"))
    return True


def assign_identities(pipeline: dict[str, Any], pipeline_id: str, application: str) -> None:
    """Set id and application, give artifacts and triggers stable ids, rewrite displayName refs."""
    pipeline["id"] = pipeline_id
    pipeline["application"] = application
    by_display_name: dict[str, str] = {}
    for artifact in expected_artifacts(pipeline):
        display_name = artifact.get("displayName")
        if not artifact.get("id") and isinstance(display_name, str):
            artifact["id"] = artifact_id_for(pipeline_id, display_name)
        if isinstance(display_name, str) and isinstance(artifact.get("id"), str):
            by_display_name.setdefault(display_name, artifact["id"])
    known_ids = {a.get("id") for a in expected_artifacts(pipeline)}
    for _, container, slot in artifact_references(pipeline):
        value = container[slot]
        if value not in known_ids and value in by_display_name:
            container[slot] = by_display_name[value]
    for index, trigger in enumerate(_dicts(pipeline.get("triggers"))):
        if trigger.get(KEEP_WITHOUT_ID) is True:
            del trigger[KEEP_WITHOUT_ID]  # the template asks to keep this trigger as it is (import)
            continue
        if not trigger.get("id"):
            trigger["id"] = trigger_id_for(pipeline_id, index, str(trigger.get("type", "")))


def _list(value: Any) -> list[Any]:
    """value when it is a list, else empty: validation reports the wrong type, not a crash."""
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item
