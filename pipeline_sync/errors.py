"""The error hierarchy: one base, subclasses where callers must tell them apart."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_sync.redact import redact


class PipelineSyncError(Exception):
    """Base class of every error pipeline-sync raises on purpose."""


@dataclass(frozen=True)
class SourceLocation:
    """Where a problem is: a file (relative to the project), a key path, a line."""

    file: str
    key_path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key_path}" if self.key_path else where


class CatalogError(PipelineSyncError):
    """A catalog file is unreadable or breaks the catalog contract."""

    def __init__(self, location: SourceLocation, message: str) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}")


class YamlDocumentError(CatalogError):
    """A YAML document could not be parsed safely (syntax, duplicate keys, alias bombs)."""


class RenderError(PipelineSyncError):
    """A template failed to render or produced something that is not a pipeline."""

    def __init__(self, partition: str, location: SourceLocation, message: str) -> None:
        self.partition = partition
        self.location = location
        self.message = message
        super().__init__(f"[{partition}] {location}: {message}")


class StoreError(PipelineSyncError):
    """Talking to Front50's store failed. The message is redacted: an endpoint URL's password or a
    presigned signature never reaches a terminal, a log or Dagster's run storage."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class StalePlanError(PipelineSyncError):
    """The live object or the render moved since the plan was approved; nothing was written."""
