"""Render and validate every target of a catalog: the pure front half of a plan."""

from __future__ import annotations

import fnmatch
import json
import multiprocessing
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline_sync.cachefiles import CacheSettings
from pipeline_sync.catalog import Catalog, Target, load_catalog
from pipeline_sync.errors import RenderError
from pipeline_sync.forked import WORKERS_VARIABLE as WORKERS_VARIABLE  # the one setting, for callers here
from pipeline_sync.forked import fork_workers
from pipeline_sync.gcpause import gc_paused
from pipeline_sync.json_members import json_members
from pipeline_sync.provenance import ManagedTexts, managed_texts
from pipeline_sync.render import Reference, RenderedPipeline, Renderer
from pipeline_sync.render_cache import (
    IDENTITY_FIELDS,
    CachedRender,
    Derived,
    RenderCache,
    checksum_of,
    context_fingerprint,
    render_key,
    template_digest,
)
from pipeline_sync.validate import validate_fleet, validate_pipeline


@dataclass(frozen=True)
class RenderOutcome:
    """A target's render and every problem found with it (empty problems = valid).

    texts: provenance.managed_texts of the render for the catalog it came from, when they were
    spliced as the render was read back from the render cache (one parse for both); else None,
    and a plan splices them itself (plan.spliced_texts)."""

    target: Target
    rendered: RenderedPipeline | None
    problems: tuple[str, ...]
    texts: ManagedTexts | None = field(default=None, compare=False, repr=False)

    @property
    def valid(self) -> bool:
        return self.rendered is not None and not self.problems


@dataclass(frozen=True)
class Sources:
    """A loaded catalog, its renderer, and the render cache render_all reads (only to plan)."""

    catalog: Catalog
    renderer: Renderer
    render_cache: RenderCache = field(default_factory=RenderCache.in_memory, compare=False, repr=False)

    @classmethod
    def load(
        cls,
        catalog_dir: Path,
        templates_dir: Path,
        *,
        render_cache: RenderCache | None = None,
        caches: CacheSettings | None = None,
    ) -> Sources:
        """Load catalog_dir and templates_dir; the render cache is the one given, else the one the
        cache settings (default: the environment's) place. Opening it reads nothing yet."""
        catalog = load_catalog(catalog_dir, templates_dir)
        if render_cache is None:
            render_cache = RenderCache.from_settings(caches or CacheSettings.from_env())
        return cls(catalog=catalog, renderer=Renderer(templates_dir, catalog), render_cache=render_cache)

    @property
    def cache(self) -> RenderCache:
        return self.render_cache


def select_keys(keys: list[str] | Mapping[str, object], pattern: str | None) -> list[str]:
    """Keys matching a shell glob (all when pattern is None), sorted."""
    return sorted(k for k in keys if pattern is None or fnmatch.fnmatchcase(k, pattern))


def render_one(workspace: Sources, target: Target) -> RenderOutcome:
    """Render and validate one target, always afresh (render_all is the cached path)."""
    return _render_one(workspace, target, None)


def _render_one(workspace: Sources, target: Target, references: list[Reference] | None) -> RenderOutcome:
    try:
        rendered = workspace.renderer.render(target, references=references)
    except RenderError as exc:
        return RenderOutcome(target, None, (str(exc),))
    problems = tuple(str(p) for p in validate_pipeline(target.key, rendered.document))
    return RenderOutcome(target, rendered, problems)


def render_all(
    workspace: Sources, keys: list[str] | None = None, *, use_cache: bool = True, with_texts: bool = False
) -> dict[str, RenderOutcome]:
    """Render and validate targets (all by default), including fleet-wide collision checks.

    A selection is still checked against the whole catalog, so it can never hide a
    duplicate: names can only collide within an application (= service), so only the
    selected services are rendered in full; ids of every other target are known without
    rendering. Renders come from the workspace's render cache when their inputs are unchanged
    (pipeline_sync.render_cache), unless use_cache is False; fleet-wide checks always run.
    with_texts: a plan's call; each render read from the cache carries its managed texts
    (RenderOutcome.texts), spliced from the same parse.
    """
    targets = workspace.catalog.targets
    wanted = sorted(targets) if keys is None else keys
    services = {targets[k].service for k in wanted} if keys is not None else set()
    chosen = set(wanted)
    siblings = [k for k, t in targets.items() if k not in chosen and t.service in services]
    chosen_targets = [targets[k] for k in dict.fromkeys([*wanted, *siblings])]
    if use_cache:
        rendered = render_many(workspace, chosen_targets, with_texts=with_texts)
    else:  # a write decision: never from the cache, which anyone with the cache directory can edit
        fresh = render_misses(workspace, chosen_targets)
        rendered = {target.key: made[0] for target, made in zip(chosen_targets, fresh, strict=True)}
    outcomes = {key: rendered[key] for key in wanted}
    documents = {k: _identity_of(o.rendered) for k, o in outcomes.items() if o.rendered is not None}
    if keys is not None:
        for key, target in targets.items():
            if key in documents:
                continue
            if target.service in services:
                other = rendered[key]
                if other.rendered is not None:
                    documents[key] = _identity_of(other.rendered)
            else:
                documents[key] = _identity_only(workspace, target)
    for key, problems in validate_fleet(documents).items():
        if key in outcomes:
            old = outcomes[key]
            extra = tuple(str(p) for p in problems)
            outcomes[key] = replace(old, problems=old.problems + extra)
    return outcomes


def render_many(
    workspace: Sources, targets: list[Target], *, with_texts: bool = False
) -> dict[str, RenderOutcome]:
    """Render and validate targets one by one (no fleet checks), through the render cache.

    Every stored row the targets need is read in one query, new renders are written in one
    transaction; render errors are never stored.
    """
    cache = workspace.cache
    templates: dict[str, str | None] = {}
    cache_keys: dict[str, str] = {}
    outcomes: dict[str, RenderOutcome] = {}
    # The cached path allocates millions of acyclic objects (rows, documents): generational
    # GC would only rescan them, again and again. Renders (misses) run with GC as it was.
    with gc_paused():
        for target in targets:
            cache_key = _cache_key(workspace, target, templates)
            if cache_key is not None:
                cache_keys[target.key] = cache_key
        stored = cache.load(cache_keys.values())
        for target in targets:
            cache_key = cache_keys.get(target.key)
            hit = stored.get(cache_key) if cache_key is not None else None
            outcome = _from_cache(workspace, target, hit, with_texts) if hit is not None else None
            if outcome is not None:
                outcomes[target.key] = outcome
    new: dict[str, CachedRender] = {}
    misses = [target for target in targets if target.key not in outcomes]
    fresh = render_misses(workspace, misses, derive=True)
    for target, (outcome, references, derived) in zip(misses, fresh, strict=True):
        cache_key = cache_keys.get(target.key)
        if cache_key is not None and derived is not None and outcome.rendered is not None:
            new[cache_key] = CachedRender(
                pipeline_id=outcome.rendered.pipeline_id,
                canonical=outcome.rendered.canonical,
                problems=outcome.problems,
                references=tuple(references),
                derived=derived,
            )
            outcome = replace(outcome, texts=_texts(derived) if with_texts else None)
        outcomes[target.key] = outcome
    cache.store(new, used=[cache_keys[k] for k in outcomes if k in cache_keys and cache_keys[k] not in new])
    return {target.key: outcomes[target.key] for target in targets}


# Renders beyond this many are shared out to a process per core (a cold run, a template change).
PARALLEL_MIN = 200
_forked: Sources | None = None  # the workspace forked render workers read (copy-on-write)
render_workers = fork_workers  # how many processes render (PIPELINE_SYNC_RENDER_WORKERS, else cores)


# A fresh render: its outcome, the pipeline_id() calls it made, and (derive) what a render cache
# row keeps derived from it.
Fresh = tuple[RenderOutcome, list[Reference], Derived | None]


def render_misses(workspace: Sources, targets: list[Target], *, derive: bool = False) -> list[Fresh]:
    """Render and validate targets afresh, in order: (outcome, the pipeline_id() calls it made,
    None), or with derive, where the render's canonical JSON reads back as its document, its
    outcome holding the render as that JSON (CanonicalRender) and what a row keeps derived from
    it (_derive): made where the render is, so forked workers do it too and send back the JSON
    without the document.

    Many of them are rendered by forked processes, one per core, each reading the workspace it
    inherited; few, or where fork is not available, in this process."""
    workers = min(render_workers(), max(1, len(targets) // (PARALLEL_MIN // 2)))
    if workers < 2 or len(targets) < PARALLEL_MIN or "fork" not in multiprocessing.get_all_start_methods():
        return [_render_tracked(workspace, target, derive) for target in targets]
    global _forked
    _forked = workspace
    try:
        chunks = [
            ([t.key for t in targets[i : i + PARALLEL_MIN // 4]], derive)
            for i in range(0, len(targets), PARALLEL_MIN // 4)
        ]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            done = [item for chunk in pool.map(_render_chunk, chunks) for item in chunk]
    finally:
        _forked = None
    return done


def _render_tracked(workspace: Sources, target: Target, derive: bool = False) -> Fresh:
    references: list[Reference] = []
    outcome = _render_one(workspace, target, references)
    rendered = outcome.rendered
    document = _read_back(rendered) if derive and rendered is not None else None
    if rendered is None or document is None:
        return outcome, references, None
    # The document a later hit will give (equal, in plain JSON types): one kind either way.
    as_json = CanonicalRender(rendered.key, rendered.pipeline_id, rendered.canonical, document)
    return replace(outcome, rendered=as_json), references, _derive(workspace, target, as_json)


def _render_chunk(chunk: tuple[list[str], bool]) -> list[Fresh]:
    """In a forked worker: render these targets of the inherited workspace."""
    workspace = _forked
    assert workspace is not None, "render workers are forked from render_misses"
    targets = workspace.catalog.targets
    keys, derive = chunk
    return [_render_tracked(workspace, targets[key], derive) for key in keys]


def _cache_key(workspace: Sources, target: Target, templates: dict[str, str | None]) -> str | None:
    """target's render cache key, or None when its render must not be cached.

    templates memoizes, per template name, the digest of its source (None: not cacheable).
    """
    if target.template not in templates:
        try:
            source = workspace.renderer.template_source(target)
        except RenderError:
            source = None  # rendering reports it
        templates[target.template] = template_digest(source) if source is not None else None
    digest = templates[target.template]
    if digest is None:
        return None
    context = context_fingerprint(target.context)
    if context is None:
        return None
    return render_key(workspace.cache.code, target, digest, context)


def _derive(workspace: Sources, target: Target, rendered: CanonicalRender) -> Derived:
    """What a plan reads of a render, for the row that stores it: the fields the fleet checks read
    (the render's own identity) and the managed texts for this catalog (provenance.managed_texts)."""
    canonical = rendered.canonical
    texts = managed_texts(
        canonical, key=target.key, source_file=target.source_file, catalog_id=workspace.catalog.catalog_id
    )
    return Derived(
        checksum=checksum_of(canonical),
        identity=_identity_of(rendered),
        texts_for=(target.source_file, workspace.catalog.catalog_id),
        render_digest=texts.render_digest if texts is not None else None,
        managed=texts.canonical if texts is not None else None,
    )


def _texts(derived: Derived) -> ManagedTexts | None:
    """The managed texts a row keeps, or None when it keeps none."""
    identity = derived.identity
    digest, managed = derived.render_digest, derived.managed
    if digest is None or managed is None or "application" not in identity or "name" not in identity:
        return None
    return ManagedTexts(digest, managed, identity["application"], identity["name"])


def _from_cache(
    workspace: Sources, target: Target, hit: CachedRender, with_texts: bool
) -> RenderOutcome | None:
    """The stored outcome, when every pipeline_id() call it made gets the same answer today.

    What the row keeps derived from its render (render_cache.Derived) is taken as it is when it
    was derived from this very text: the fields the fleet checks read and, with_texts, the managed
    texts when they were made for this target's catalog file and this catalog's id; nothing is
    parsed then. Otherwise the stored JSON is parsed once: for the fields the fleet checks read
    and, with_texts, when it is an object written as canonical_json writes one (a stored render
    is), for the managed texts a plan splices (the outcome's texts). Other JSON is read with
    json.loads, its texts left to the plan. A row stored without problems whose identity is not
    one validate_pipeline passes was edited by hand: its derived identity is left out, and a
    document that lacks it is a miss (_written_here)."""
    renderer = workspace.renderer
    for app_name, stack, template, answer in hit.references:
        if renderer.referenced_id(app_name, stack, template) != answer:
            return None
    derived = hit.derived
    if (
        derived is not None
        and derived.matches(hit.canonical)
        and _written_here(hit.problems, derived.identity)
    ):
        texts_apply = derived.texts_for == (target.source_file, workspace.catalog.catalog_id)
        if not with_texts or texts_apply:
            rendered = CanonicalRender(target.key, hit.pipeline_id, hit.canonical, derived.identity)
            return RenderOutcome(target, rendered, hit.problems, _texts(derived) if with_texts else None)
    members = json_members(hit.canonical) if with_texts else None
    if members is None:
        try:
            document = json.loads(hit.canonical)
        except ValueError:
            return None
        if not isinstance(document, dict) or not _written_here(hit.problems, document):
            return None
        rendered = CanonicalRender(target.key, hit.pipeline_id, hit.canonical, document)
        return RenderOutcome(target, rendered, hit.problems)
    identity = {name: members[name][0] for name in IDENTITY_FIELDS if name in members}
    if not _written_here(hit.problems, identity):
        return None
    texts = managed_texts(
        hit.canonical,
        key=target.key,
        source_file=target.source_file,
        catalog_id=workspace.catalog.catalog_id,
        members=members,
    )
    rendered = CanonicalRender(target.key, hit.pipeline_id, hit.canonical, identity)
    return RenderOutcome(target, rendered, hit.problems, texts)


def _written_here(problems: tuple[str, ...], identity: Mapping[str, Any]) -> bool:
    """Whether a stored render could have come from this code: one stored without problems passed
    validate_pipeline, which holds its id, application and name to non-empty strings. A row that
    claims otherwise (edited by hand) is a miss, rendered again, not a plan that fails on it."""
    return bool(problems) or all(isinstance(identity.get(f), str) and identity[f] for f in IDENTITY_FIELDS)


class CanonicalRender(RenderedPipeline):
    """A render kept as its canonical JSON only (plus the fields the fleet checks read): its
    document is parsed again on each read, so a plan of a fleet never holds every rendered
    document at once (~5x its canonical JSON in memory). Equal to the RenderedPipeline it stands
    for; only made where the canonical JSON reads back as exactly the document."""

    def __init__(self, key: str, pipeline_id: str, canonical: str, document: Mapping[str, Any]) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "pipeline_id", pipeline_id)
        object.__setattr__(self, "canonical", canonical)
        object.__setattr__(self, "identity", {f: document[f] for f in IDENTITY_FIELDS if f in document})

    @property  # type: ignore[misc]
    def document(self) -> Mapping[str, Any]:  # type: ignore[override]
        parsed: dict[str, Any] = json.loads(self.canonical)
        return parsed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RenderedPipeline):
            return NotImplemented
        mine = (self.key, self.pipeline_id, self.canonical)
        return mine == (other.key, other.pipeline_id, other.canonical) and self.document == other.document

    __hash__ = None  # type: ignore[assignment]


def _identity_of(rendered: RenderedPipeline) -> Mapping[str, Any]:
    """What validate_fleet reads of a render (its id, application and name), without a parse."""
    if isinstance(rendered, CanonicalRender):
        identity: Mapping[str, Any] = rendered.__dict__["identity"]
        return identity
    return rendered.document


def _read_back(rendered: RenderedPipeline) -> dict[str, Any] | None:
    """The canonical JSON read back, when it equals the document (no tuples, no non-string keys)."""
    document = json.loads(rendered.canonical)
    return document if isinstance(document, dict) and document == rendered.document else None


def _identity_only(workspace: Sources, target: Target) -> dict[str, str]:
    """What the fleet check needs of an unrendered target of another application: its id.

    The name is a placeholder that cannot collide: another application's names never clash.
    """
    return {
        "id": workspace.renderer.pipeline_id(target.key),
        "application": target.application,
        "name": f"\x00{target.key}",
    }
