"""The store seam: what the engine needs from wherever Front50 keeps its pipelines.

The engine plans and applies against this protocol only. Each implementation keeps the objects
exactly as Front50 would (S3 today: `pipeline_sync.store.s3`), and makes its own precondition
token opaque to the planner (for S3 it is the ETag). Front50 facts that are not about one store
(the marker, the application object, who writes) live in `pipeline_sync.store.s3`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pipeline_sync.errors import StoreError

if TYPE_CHECKING:
    from pipeline_sync.live import LiveObject


class PermissionRefusedError(StoreError):
    """Spinnaker refused a write because the user it was made as lacks a permission (Fiat): a
    refusal to report, not a failure to retry. The message names the user, permission and application."""


@dataclass(frozen=True)
class WriteResult:
    """What a write left behind, for the audit trail."""

    key: str
    etag: str | None
    version_id: str | None
    marker_error: str | None = None


@dataclass(frozen=True)
class ObjectVersion:
    """One stored version of a pipeline (an S3 object version, a history row)."""

    version_id: str
    etag: str
    last_modified: str
    is_latest: bool


class Store(Protocol):
    """Front50's pipelines, read in bulk and written one by one under a precondition."""

    def describe(self) -> str:
        """Where the pipelines are, for messages (no credentials), e.g. s3://bucket/front50."""
        ...

    def read_live(self) -> dict[str, LiveObject]:
        """Every pipeline by lower-case id, summarised; caches may serve unchanged ones."""
        ...

    def read_pipeline(self, pipeline_id: str) -> LiveObject | None:
        """One pipeline, fresh from the store (never a cache), or None when absent."""
        ...

    def keeps_history(self) -> bool:
        """True when earlier versions of each pipeline can be read."""
        ...

    def pipeline_versions(self, pipeline_id: str) -> list[ObjectVersion]:
        """Stored versions of one pipeline, newest first."""
        ...

    def read_pipeline_version(self, pipeline_id: str, version_id: str) -> LiveObject:
        """One stored version of a pipeline, parsed like a live one."""
        ...

    def put_pipeline(self, pipeline_id: str, body: bytes, *, if_match: str | None) -> WriteResult:
        """Write only if the pipeline is still at version if_match (None: still absent);
        else raise StalePlanError and write nothing."""
        ...

    def delete_pipeline(self, pipeline_id: str, *, if_match: str) -> WriteResult:
        """Delete only if the pipeline is still at version if_match; else StalePlanError."""
        ...

    def ensure_application(self, application: str, email: str | None) -> bool:
        """Create the application when Front50 does not know it; True when created."""
        ...

    def repair_change_signals(self) -> list[str]:
        """Bump every change signal an earlier, interrupted write left behind; what was bumped."""
        ...
