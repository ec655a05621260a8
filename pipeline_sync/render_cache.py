"""A persistent render cache: each target's canonical JSON and validation, reused while its inputs hold.

What its key covers and why a stale row is a miss, never a wrong answer: docs/render-cache.md.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import sqlite3
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import yaml

import pipeline_sync
from pipeline_sync import fingerprint
from pipeline_sync.cachefiles import CacheSettings, guarded_sqlite
from pipeline_sync.catalog import Target
from pipeline_sync.render import Reference

# Bump when what a cached render means changes without a change to CODE_MODULES' source.
# 2: each row also keeps what a plan reads of its render (Derived: identity and managed texts).
RENDER_CACHE_FORMAT = 2
CACHE_FILE = "render-cache.sqlite"
TABLE = f"renders_v{RENDER_CACHE_FORMAT}"
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, "
    "canonical TEXT NOT NULL, problems TEXT NOT NULL, refs TEXT NOT NULL, "
    "used INTEGER NOT NULL, derived TEXT, managed TEXT) WITHOUT ROWID"
)
# Whether a row's canonical JSON is a JSON object (RFC 8259), checked by sqlite's own JSON parser
# as the rows are read (about 0.1 s for 10,000): a row's derived columns are used only then, as a
# hit that takes them parses nothing, and a text that does not parse must stay a miss.
_SOUND = "CASE WHEN json_valid(canonical) THEN json_type(canonical) = 'object' ELSE 0 END"
# The tables of earlier formats, which this code never reads: dropped when the file is opened.
OLD_TABLES = tuple(f"renders_v{n}" for n in range(1, RENDER_CACHE_FORMAT))
MAX_IDLE_DAYS = 14
MAX_ROWS = 200_000
_DAY = 86_400
_T = TypeVar("_T")

# Modules whose code decides a render, its validation problems or what a row keeps derived
# from it (the managed texts: provenance, json_members).
CODE_MODULES = (
    "pipeline_sync.rendering",
    "pipeline_sync.canonical",
    "pipeline_sync.errors",
    "pipeline_sync.front50_model",
    "pipeline_sync.identity",
    "pipeline_sync.json_members",
    "pipeline_sync.names",
    "pipeline_sync.nesting",
    "pipeline_sync.provenance",
    "pipeline_sync.render",
    "pipeline_sync.render_cache",
    "pipeline_sync.sandbox",
    "pipeline_sync.spel",
    "pipeline_sync.validate",
    "pipeline_sync.yamlsafe",
)
LIBRARIES = ("jinja2", "MarkupSafe", "PyYAML")


@dataclass(frozen=True)
class Derived:
    """What a plan reads of a stored render, kept beside it so that a hit parses nothing: the
    fields the fleet checks read (identity: id, application, name, those it has) and, for the
    catalog file and catalog id it was made for (texts_for), its managed texts
    (provenance.managed_texts: render_digest and managed, both None when there are none).

    checksum is zlib.crc32 of the canonical JSON it was derived from: a row whose canonical was
    changed since (by hand: this code writes both at once) is read as if it had nothing derived.
    It is no seal against someone who edits the file; nothing in the render cache is, which is
    why it never decides a write (docs/render-cache.md)."""

    checksum: int
    identity: Mapping[str, Any]
    texts_for: tuple[str, str | None]
    render_digest: str | None
    managed: str | None

    def matches(self, canonical: str) -> bool:
        return self.checksum == checksum_of(canonical)


def checksum_of(canonical: str) -> int:
    return zlib.crc32(canonical.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class CachedRender:
    """What a render left behind: enough to rebuild its RenderedPipeline and RenderOutcome."""

    pipeline_id: str
    canonical: str
    problems: tuple[str, ...]
    references: tuple[Reference, ...]
    derived: Derived | None = None


def code_fingerprint() -> str | None:
    """sha256 over everything in the code that a render depends on; None if a source is unreadable.

    Computed once, when this module is imported: right after the modules it reads were
    imported, so the source it hashes is the code that runs (even if files change later).
    """
    return _CODE_FINGERPRINT


def _fingerprint() -> str | None:
    parts = [
        "pipeline-sync render cache",
        str(RENDER_CACHE_FORMAT),
        pipeline_sync.__version__,
        f"{sys.implementation.name} {sys.version_info.major}.{sys.version_info.minor}",
        f"libyaml={getattr(yaml, '__with_libyaml__', False)}",
        f"jinja2.__version__={jinja2.__version__}",
    ]
    for library in LIBRARIES:
        try:
            parts.append(f"{library}={importlib.metadata.version(library)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{library}=?")
    sources: list[str | None] = []
    for name in CODE_MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        parts.append(name)
        sources.append(spec.origin if spec is not None else None)
    return fingerprint.code_fingerprint(parts, sources)


def context_fingerprint(context: Mapping[str, Any]) -> str | None:
    """The context as JSON in its own key order, or None when it holds anything but plain JSON types."""
    if not isinstance(context, dict) or not _plain(context):
        return None
    try:
        return json.dumps(context, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def _plain(root: Any) -> bool:
    """True when root is built only of dict (string keys), list, str, int, float, bool and None."""
    stack = [root]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, value in item.items():
                if type(key) is not str:
                    return False
                if type(value) in (dict, list):
                    stack.append(value)
                elif type(value) not in _SCALARS:
                    return False
        elif kind is list:
            for value in item:
                if type(value) in (dict, list):
                    stack.append(value)
                elif type(value) not in _SCALARS:
                    return False
        elif kind not in _SCALARS:
            return False
    return True


_SCALARS = (str, int, float, bool, type(None))


def template_digest(source: str) -> str:
    """sha256 of a template's text, as it is compiled."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def render_key(code: str, target: Target, template: str, context: str) -> str:
    """The cache key of one target's render (see the module docstring for what it covers).

    template is template_digest() of the source the renderer compiled, context is
    context_fingerprint() of target.context. The target's own id is its pinned id, else
    derived from its key by code the fingerprint covers.
    """
    own_id = f"pinned:{target.pinned_id}" if target.pinned_id else "derived"
    parts = (code, target.key, target.service, target.template, own_id, template, context)
    # Length-prefixed, so no two different part lists hash the same text; one update is faster
    # than canonical.sha256_hex's two per part, 10,000 times a plan.
    text = "".join(f"{len(part)}:{part}" for part in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the render cache lives, or None when PIPELINE_SYNC_CACHE turns caching off."""
    return CacheSettings.from_env(environ).file(CACHE_FILE)


class RenderCache:
    """Stored renders by key: in a sqlite file across runs, or in memory for one workspace."""

    def __init__(self, path: Path | None) -> None:
        self._code = code_fingerprint()
        self._path = path if self._code is not None else None
        self._memory: dict[str, CachedRender] = {}
        self._used: dict[str, int] = {}  # key -> when it was last marked used, of rows loaded
        # writes_behind(): the thread whose block is open (only its stores write behind; another
        # thread's write at once), the store still writing (one at most), and what it raised.
        self._behind_for: int | None = None
        self._writing: threading.Thread | None = None
        self._write_error: BaseException | None = None
        self._opening = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RenderCache:
        return cls(cache_path(environ))

    @classmethod
    def from_settings(cls, settings: CacheSettings) -> RenderCache:
        return cls(settings.file(CACHE_FILE))

    @classmethod
    def in_memory(cls) -> RenderCache:
        return cls(None)

    @property
    def path(self) -> Path | None:
        """The sqlite file, or None when this cache lives in memory."""
        return self._path

    @property
    def code(self) -> str:
        """The code fingerprint every key of this cache starts from."""
        return self._code or "unfingerprinted"

    # -- writing behind -----------------------------------------------------
    @contextmanager
    def writes_behind(self) -> Iterator[None]:
        """Within it, store() writes to the file in a thread of its own and returns at once, so a
        plan goes on while sqlite writes (a template change's thousand new rows: about 0.4 s, most
        of it waiting on the file). load() and store() first wait for the writes before them.
        Leaving it waits for every write, and raises what one raised (unless leaving on an error
        of its own): no write outlives it. Nested, the outermost waits. While one thread is in the
        block, another thread's stores write before they return, as outside it."""
        with self._opening:
            opened = self._behind_for is None
            if opened:
                self._behind_for = threading.get_ident()
        if not opened:
            yield
            return
        try:
            yield
        except BaseException:
            self._settle(raising=False)  # the error that left it is the one to raise
            raise
        else:
            self._settle()
        finally:
            self._behind_for = None

    def _writes_behind_here(self) -> bool:
        """Whether this thread is in writes_behind()."""
        return self._behind_for == threading.get_ident()

    def _settle(self, *, raising: bool = True) -> None:
        """Wait for the store still writing; raise what it raised (raising)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.join()
        error, self._write_error = self._write_error, None
        if error is not None and raising:
            raise error

    def _write_behind(self, new: Mapping[str, CachedRender], used: list[str]) -> None:
        """_store_now in a thread of its own (writes_behind)."""

        def write() -> None:
            try:
                self._store_now(new, used)
            except BaseException as exc:  # raised when the write is waited for
                self._write_error = exc

        self._writing = threading.Thread(target=write, name="pipeline-sync-render-cache")
        self._writing.start()

    # -- reads --------------------------------------------------------------
    def load(self, keys: Iterable[str]) -> dict[str, CachedRender]:
        """The stored renders of keys (those it has), read in one query, after the writes
        before it (writes_behind)."""
        if self._writes_behind_here():
            self._settle()
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        if self._path is None:
            return {k: self._memory[k] for k in wanted if k in self._memory}
        nothing: list[tuple[Any, ...]] = []
        rows = self._guarded(lambda db: self._select(db, wanted), nothing)
        found: dict[str, CachedRender] = {}
        for key, pipeline_id, canonical, problems, references, used, derived, managed, sound in rows:
            entry = _entry(pipeline_id, canonical, problems, references, derived if sound else None, managed)
            if entry is not None:
                found[key] = entry
                self._used[key] = used if isinstance(used, int) else 0
        return found

    @staticmethod
    def _select(db: sqlite3.Connection, wanted: list[str]) -> list[tuple[Any, ...]]:
        return db.execute(
            f"SELECT key, pipeline_id, canonical, problems, refs, used, derived, managed, {_SOUND} "
            f"FROM {TABLE} WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),),
        ).fetchall()

    # -- writes -------------------------------------------------------------
    def store(self, new: Mapping[str, CachedRender], used: Iterable[str] = ()) -> None:
        """Write new renders and mark used ones as used today, in one transaction.

        Also forgets renders unused for MAX_IDLE_DAYS days and the oldest beyond MAX_ROWS.
        A locked or unwritable cache is left as it is: the next run renders again. Within
        this thread's writes_behind(), the file is written in a thread of its own, after the writes
        before it.
        """
        if self._path is None:
            self._memory.update(new)
            return
        if self._writes_behind_here():
            self._settle()
            self._write_behind(new, list(used))
            return
        self._store_now(new, used)

    def _store_now(self, new: Mapping[str, CachedRender], used: Iterable[str]) -> None:
        now = int(time.time())
        assert self._path is not None
        stale = [(now, k) for k in used if self._used.get(k, now) < now - _DAY]
        if not new and not stale:
            return
        rows = [
            (
                key,
                entry.pipeline_id,
                entry.canonical,
                json.dumps(list(entry.problems)),
                json.dumps([list(r) for r in entry.references]),
                now,
                _derived_text(entry.derived),
                entry.derived.managed if entry.derived is not None else None,
            )
            for key, entry in sorted(new.items(), key=lambda item: item[0])
        ]  # in key order: each insert lands beside the last (a third less CPU for 10,000 new rows)

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.executemany(
                    f"INSERT OR REPLACE INTO {TABLE} "
                    "(key, pipeline_id, canonical, problems, refs, used, derived, managed) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.executemany(f"UPDATE {TABLE} SET used = ? WHERE key = ?", stale)
                if rows:
                    db.execute(f"DELETE FROM {TABLE} WHERE used < ?", (now - MAX_IDLE_DAYS * _DAY,))
                    (count,) = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
                    if count > MAX_ROWS:
                        db.execute(
                            f"DELETE FROM {TABLE} WHERE key IN "
                            f"(SELECT key FROM {TABLE} ORDER BY used DESC LIMIT -1 OFFSET ?)",
                            (MAX_ROWS,),
                        )

        self._guarded(write, None)

    # -- the file -----------------------------------------------------------
    def _guarded(self, action: Callable[[sqlite3.Connection], _T], fallback: _T) -> _T:
        assert self._path is not None
        return guarded_sqlite(self._path, _STATEMENTS, action, fallback)


def _entry(
    pipeline_id: Any, canonical: Any, problems: Any, references: Any, derived: Any = None, managed: Any = None
) -> CachedRender | None:
    """A stored row as a CachedRender, or None when it is not what this code writes. Its derived
    columns, when they are not what this code writes, are left out (the render is still used)."""
    try:
        problem_list = [] if problems == "[]" else json.loads(problems)
        reference_list = [] if references == "[]" else json.loads(references)
    except (TypeError, ValueError):
        return None
    if not (
        isinstance(pipeline_id, str)
        and isinstance(canonical, str)
        and isinstance(problem_list, list)
        and all(isinstance(p, str) for p in problem_list)
        and isinstance(reference_list, list)
        and all(_is_reference(r) for r in reference_list)
    ):
        return None
    return CachedRender(
        pipeline_id=pipeline_id,
        canonical=canonical,
        problems=tuple(problem_list),
        references=tuple((r[0], r[1], r[2], r[3]) for r in reference_list),
        derived=_derived_of(derived, managed),
    )


def _derived_text(derived: Derived | None) -> str | None:
    if derived is None:
        return None
    return json.dumps(
        {
            "checksum": derived.checksum,
            "identity": dict(derived.identity),
            "for": list(derived.texts_for),
            "renderDigest": derived.render_digest,
        },
        ensure_ascii=True,
        allow_nan=False,
        separators=(",", ":"),
    )


def _derived_of(text: Any, managed: Any) -> Derived | None:
    """The derived columns as Derived, or None when they are absent or not what _derived_text
    and store write (both texts or neither)."""
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    fields = ("checksum", "identity", "for", "renderDigest")
    checksum, identity, made_for, digest = (data.get(name) for name in fields)
    if not (
        type(checksum) is int
        and isinstance(identity, dict)
        and set(identity) <= set(IDENTITY_FIELDS)
        and isinstance(made_for, list)
        and len(made_for) == 2
        and isinstance(made_for[0], str)
        and (made_for[1] is None or isinstance(made_for[1], str))
        and (digest is None) == (managed is None)
        and (digest is None or (isinstance(digest, str) and isinstance(managed, str)))
    ):
        return None
    return Derived(checksum, identity, (made_for[0], made_for[1]), digest, managed)


# What the fleet checks (validate_fleet) read of a render: the fields that collide.
IDENTITY_FIELDS = ("id", "application", "name")


def _is_reference(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, str) for v in value[:3])
        and (value[3] is None or isinstance(value[3], str))
    )


_STATEMENTS = (*(f"DROP TABLE IF EXISTS {table}" for table in OLD_TABLES), SCHEMA)
_CODE_FINGERPRINT = _fingerprint()
