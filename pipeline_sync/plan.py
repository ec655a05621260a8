"""The plan: each target's render against its live object, as a status, a diff and a digest (pure)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from pipeline_sync.canonical import canonical_json, sha256_hex
from pipeline_sync.catalog import Catalog, Target
from pipeline_sync.diff import changed_paths, fleet_signature, semantic_diff, to_yaml, unified_diff
from pipeline_sync.forked import call_forked
from pipeline_sync.gcpause import gc_paused
from pipeline_sync.live import LiveObject
from pipeline_sync.names import split_key
from pipeline_sync.ownership import Owner, Ownership, ownership
from pipeline_sync.provenance import (
    MARKER_FIELD,
    ManagedTexts,
    as_written,
    kept_from,
    managed_document,
    managed_texts,
    marker_of,
    normalise,
    render_digests,
    signed_by,
)
from pipeline_sync.status import ACTIONABLE, AUTO_APPROVABLE, ERRORS, Status

if TYPE_CHECKING:  # build owns the render cache (sqlite); the planner only reads its outcomes
    from pipeline_sync.rendering import RenderOutcome

PLAN_FORMAT = 1
ROLLBACK_SOURCE = "rollback:"


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class PlanEntry:
    """What would happen to one pipeline, and the digest an approval must name."""

    key: str
    status: Status
    digest: str
    pipeline_id: str | None = None
    application: str | None = None
    name: str | None = None
    stack: str | None = None
    live_etag: str | None = None
    approval: str = "manual"
    email: str | None = None
    messages: tuple[str, ...] = ()
    diff: Mapping[str, Any] = field(default_factory=dict)
    diff_yaml: str = ""
    unified: str = ""
    drift_kind: str | None = None
    drift_fields: tuple[str, ...] = ()
    signature: str | None = None
    adopt: bool = False
    desired: Mapping[str, Any] | None = None
    # What a person changed since pipeline-sync wrote the pipeline (written -> live), as YAML.
    drift_yaml: str = ""
    # Where desired comes from: None for the catalog, "rollback:<S3 version id>" for a rollback.
    source: str | None = None

    @property
    def rollback_version(self) -> str | None:
        """The S3 version a rollback entry restores, or None for a catalog entry."""
        if self.source and self.source.startswith(ROLLBACK_SOURCE):
            return self.source[len(ROLLBACK_SOURCE) :]
        return None

    @property
    def actionable(self) -> bool:
        return self.status in ACTIONABLE

    @property
    def policy_approvable(self) -> bool:
        """True when the stack's `approval: auto` covers this entry: a create or update of the
        catalog's own render on an auto stack. Never an adoption, a drift, a delete or a rollback."""
        return (
            self.approval == "auto"
            and self.status in AUTO_APPROVABLE
            and not self.adopt
            and self.source is None
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        data["messages"] = list(self.messages)
        data["drift_fields"] = list(self.drift_fields)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanEntry:
        values = dict(data)
        values["status"] = Status(values["status"])
        values["messages"] = tuple(values.get("messages", ()))
        values["drift_fields"] = tuple(values.get("drift_fields", ()))
        return cls(**values)


@dataclass(frozen=True)
class Plan:
    """Every entry, keyed by partition key, plus problems that belong to no entry."""

    entries: Mapping[str, PlanEntry]
    warnings: tuple[str, ...] = ()
    # Pipelines another catalog manages on the same store, by that catalog's id ("" = unnamed).
    elsewhere: Mapping[str, int] = field(default_factory=dict)
    # key -> who signed the approval of the live version ("alice (SHA256:...), ..."), where signed.
    signed_by: Mapping[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(str(e.status) for e in self.entries.values()).items()))

    @property
    def has_errors(self) -> bool:
        return any(e.status in ERRORS for e in self.entries.values())

    @property
    def has_changes(self) -> bool:
        return any(e.actionable for e in self.entries.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "warnings": list(self.warnings),
            "elsewhere": dict(self.elsewhere),
            "entries": [self.entries[k].to_json() for k in sorted(self.entries)],
            "signed_by": dict(self.signed_by),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {data.get('format')!r}; expected {PLAN_FORMAT}")
        entries = [PlanEntry.from_json(e) for e in data["entries"]]
        elsewhere = {str(k): int(v) for k, v in dict(data.get("elsewhere", {})).items()}
        signed = {str(k): str(v) for k, v in dict(data.get("signed_by", {})).items()}
        return cls({e.key: e for e in entries}, tuple(data.get("warnings", ())), elsewhere, signed)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


def plan_digest(key: str, live_etag: str | None, desired: Mapping[str, Any] | None) -> str:
    """sha256 over (key, live ETag or "absent", canonical rendered JSON or "absent")."""
    return digest_of_text(key, live_etag, canonical_json(desired) if desired is not None else "absent")


def digest_of_text(key: str, live_etag: str | None, body: str) -> str:
    """plan_digest, given the canonical JSON of desired (or "absent") as body."""
    return sha256_hex(key, live_etag or "absent", body)


class _LiveIndex:
    """Live objects by id and by (application, name), compared case-insensitively."""

    def __init__(self, live: Mapping[str, LiveObject]) -> None:
        self.by_id = {pid.lower(): obj for pid, obj in live.items()}
        self.by_name: dict[tuple[str, str], list[LiveObject]] = defaultdict(list)
        for obj in live.values():
            summary = obj.summary
            if summary.application is not None and summary.name is not None:
                self.by_name[(summary.application.lower(), summary.name.lower())].append(obj)

    def same_name(self, application: str, name: str, except_id: str) -> list[LiveObject]:
        found = self.by_name.get((application.lower(), name.lower()), [])
        return [o for o in found if o.pipeline_id.lower() != except_id.lower()]


@dataclass(frozen=True)
class _Deferred:
    """The rest of a target's entry, its diffs: computed after every target's cheap part, in
    forked processes when there are many (a template change). desired is the render the call
    holds: the entry's own desired comes back from a worker only when it is another one."""

    call: Callable[[], PlanEntry]
    desired: Mapping[str, Any]

    def packed(self) -> tuple[PlanEntry, bool]:
        """(the entry, True) without its desired when that is self.desired: what a worker sends back."""
        entry = self.call()
        if entry.desired is self.desired:
            return replace(entry, desired=None), True
        return entry, False

    def unpacked(self, packed: tuple[PlanEntry, bool]) -> PlanEntry:
        entry, same = packed
        return replace(entry, desired=self.desired) if same else entry


# Diffs of at least this many out-of-sync entries are shared out to a process per core.
PARALLEL_MIN = 64
PARALLEL_CHUNK = 16


def _settled(found: Mapping[str, PlanEntry | _Deferred]) -> dict[str, PlanEntry]:
    """found with every deferred entry computed: by forked workers when many (forked.call_forked)."""
    deferred = [(key, item) for key, item in found.items() if isinstance(item, _Deferred)]
    calls = [item.packed for _, item in deferred]
    done = call_forked(calls, minimum=PARALLEL_MIN, chunk=PARALLEL_CHUNK)
    settled = {key: item for key, item in found.items() if isinstance(item, PlanEntry)}
    for (key, item), packed in zip(deferred, done, strict=True):
        settled[key] = item.unpacked(packed)
    return {key: settled[key] for key in found}


def build_plan(
    catalog: Catalog,
    outcomes: Mapping[str, RenderOutcome],
    live: Mapping[str, LiveObject],
    *,
    scope: Iterable[str] | None = None,
    written: Mapping[str, Mapping[str, Any]] | None = None,
    texts: Mapping[str, ManagedTexts | None] | None = None,
) -> Plan:
    """Combine renders and live objects into a plan.

    scope limits which managed live pipelines may become orphan/delete/unknown entries
    (a --select glob); None means the whole bucket.
    written maps a pipeline id (lower-case) to the document pipeline-sync last wrote there,
    found in the bucket's version history; it separates a person's edits from the catalog's
    when both changed a pipeline. Without it such drift is shown as one diff.
    texts holds spliced_texts(catalog, outcomes), when the caller computed them already.
    """
    # The cyclic GC stays on for the diffs (_settled): DeepDiff's result trees are cyclic, and a
    # template change diffs thousands of pipelines (paused, 1,052 diffs at N=10,000 peaked at
    # 1.1 GiB). Each target's cheap part makes entries, partials and parsed bodies, none cyclic:
    # paused there, as full collections over the plan's heap took 0.5 s of a 1.6 s pass.
    index = _LiveIndex(live)
    history = {pid.lower(): doc for pid, doc in (written or {}).items()}
    owners = _Owners(catalog)
    with gc_paused():
        spliced = spliced_texts(catalog, outcomes) if texts is None else texts
        found = {
            key: _target_entry(catalog, outcome, index, history, owners, spliced.get(key))
            for key, outcome in outcomes.items()
        }
    entries = _settled(found)
    wanted_scope = set(scope) if scope is not None else None
    warnings = []
    elsewhere: Counter[str] = Counter()
    signed: dict[str, str] = {}
    for obj in live.values():
        if obj.problem and not obj.summary.has_document:
            warnings.append(f"live object {obj.key} is unreadable ({obj.problem}); left alone")
        marker = obj.summary.marker
        if marker is None:
            continue
        owner = owners.of(obj.pipeline_id, obj.summary.application, marker)
        claimed = str(marker.get("key"))
        if wanted_scope is not None and claimed not in wanted_scope:
            continue
        if owner.owner is Owner.ELSEWHERE:
            elsewhere[owner.catalog_id or ""] += 1
            continue
        if owner.owner is Owner.NONE:
            if catalog.pipeline_id(claimed).lower() != obj.pipeline_id.lower() or claimed not in entries:
                warnings.append(f"live pipeline {obj.pipeline_id} is not managed: {owner.reason}; left alone")
            continue
        key = str(owner.key)
        if who := signed_by(marker):
            signed[key] = who
        if key in entries or key in catalog.targets:
            continue  # planned above, or in the catalog but outside this selection
        entries[key] = _leftover_entry(catalog, key, obj, history.get(obj.pipeline_id.lower()))
    return Plan(
        dict(sorted(entries.items())), tuple(sorted(warnings)), dict(sorted(elsewhere.items())), signed
    )


def spliced_texts(catalog: Catalog, outcomes: Mapping[str, RenderOutcome]) -> dict[str, ManagedTexts | None]:
    """managed_texts of each valid render, by key: the part of a target's entry that needs no live
    object, so a plan can compute it while the store is still being read (engine.plan_loading).
    An outcome's own texts (spliced as it was read from the render cache, for this catalog) are
    taken as they are."""
    texts: dict[str, ManagedTexts | None] = {}
    for key, outcome in outcomes.items():
        rendered = outcome.rendered
        if outcome.valid and rendered is not None:
            if outcome.texts is not None:
                texts[key] = outcome.texts
                continue
            target = outcome.target
            texts[key] = managed_texts(
                rendered.canonical,
                key=target.key,
                source_file=target.source_file,
                catalog_id=catalog.catalog_id,
            )
    return texts


class _Owners:
    """ownership() of live pipelines, each computed once per plan: a target's entry and the pass
    over the live pipelines ask about the same ones (the marker is the summary's own mapping)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.known: dict[tuple[str, str | None, int], tuple[Mapping[str, Any], Ownership]] = {}

    def of(self, pipeline_id: str, application: str | None, marker: Mapping[str, Any]) -> Ownership:
        memo = (pipeline_id, application, id(marker))
        found = self.known.get(memo)
        if found is not None and found[0] is marker:
            return found[1]
        owner = ownership(self.catalog, pipeline_id, application, marker)
        self.known[memo] = (marker, owner)  # holding marker keeps its id from being reused
        return owner


def _target_entry(
    catalog: Catalog,
    outcome: RenderOutcome,
    index: _LiveIndex,
    written: Mapping[str, Mapping[str, Any]],
    owners: _Owners,
    texts: ManagedTexts | None,
) -> PlanEntry | _Deferred:
    """The entry of a target, or what is left to compute of it (its diffs) when it is not in sync."""
    target = outcome.target
    common: dict[str, Any] = {"key": target.key, "stack": target.stack, "approval": target.approval}
    if not outcome.valid or outcome.rendered is None:
        origin = (
            f"{target.source_file}: stacks.{target.stack}.pipelines lists template {target.template!r}; "
            f"nothing is written for {target.key} until the problems above are fixed"
        )
        return PlanEntry(
            status=Status.INVALID,
            digest=plan_digest(target.key, None, None),
            messages=(*outcome.problems, origin),
            **common,
        )
    rendered = outcome.rendered
    make = partial(
        managed_document,
        rendered.canonical,
        key=target.key,
        source_file=target.source_file,
        catalog_id=catalog.catalog_id,
    )
    # A warm plan's entries are nearly all in sync, and such an entry holds no document: its
    # digests are spliced from the render's JSON (managed_texts) and trusted only when its
    # renderDigest equals the live content digest, which proves the spliced texts canonical.
    # Every other entry, and an in-sync one the texts miss, is computed from the managed
    # document, built as before. texts is this outcome's entry in spliced_texts.
    built = make() if texts is None else None
    if texts is not None:
        application, name = str(texts.application), str(texts.name)
    else:
        assert built is not None
        application, name = str(built["application"]), str(built["name"])
    pipeline_id = rendered.pipeline_id
    live = index.by_id.get(pipeline_id.lower())
    etag = live.etag if live else None
    head: dict[str, Any] = dict(
        common,
        pipeline_id=pipeline_id,
        application=application,
        name=name,
        email=target.context.get("email"),
        live_etag=etag,
    )

    def complete() -> tuple[dict[str, Any], dict[str, Any]]:
        """The managed document and the entry's fields with its digest: every entry's but the
        one in sync on the texts alone."""
        desired = built if built is not None else make()
        return desired, {**head, "digest": plan_digest(target.key, etag, desired)}

    clashes = index.same_name(application, name, pipeline_id)
    if clashes:
        ids = ", ".join(sorted(o.pipeline_id for o in clashes))
        return PlanEntry(
            status=Status.CONFLICT,
            messages=(
                f"another live pipeline ({ids}) already has application {application!r} and "
                f"name {name!r}; rename one of them, or adopt it with `pipeline-sync adopt "
                f"{application} {name!r}`",
            ),
            **complete()[1],
        )
    if live is None:
        desired, base = complete()
        return _Deferred(partial(_changed, Status.CREATE, None, desired, base), desired)
    summary = live.summary
    marker = summary.marker
    if not summary.has_document or marker is None:
        return _unmanaged_at_our_id(target, live, make, complete()[1])
    owner = owners.of(pipeline_id, summary.application, marker)
    if owner.owner is not Owner.OURS or owner.key != target.key:
        reason = owner.reason if owner.owner is not Owner.OURS else f"its marker names {owner.key!r}"
        return PlanEntry(
            status=Status.CONFLICT,
            messages=(
                f"the live pipeline at this pipeline's id {pipeline_id} is not managed as {target.key} "
                f"by this catalog: {reason}; it is left alone",
            ),
            **complete()[1],
        )
    # In sync without parsing the body: a warm plan's case.
    if texts is not None and summary.content_digest == texts.render_digest:
        return PlanEntry(
            status=Status.IN_SYNC, digest=digest_of_text(target.key, etag, texts.canonical), **head
        )
    desired, base = complete()
    if summary.content_digest == desired[MARKER_FIELD]["renderDigest"]:  # content_digest(desired)
        return PlanEntry(status=Status.IN_SYNC, **base)
    live.load()  # here, not in a forked worker: a body the store deferred is read and checked once
    rest = partial(_out_of_sync, live, marker, make, desired, base, written.get(pipeline_id.lower()))
    return _Deferred(rest, desired)


def _out_of_sync(
    live: LiveObject,
    marker: Mapping[str, Any],
    make: Callable[..., dict[str, Any]],
    desired: dict[str, Any],
    base: dict[str, Any],
    written_before: Mapping[str, Any] | None,
) -> PlanEntry:
    """The entry of a managed live pipeline whose content differs from the render: an update, a
    drift, or in sync after all once what a write keeps of the live pipeline is kept."""
    live_digest = live.summary.content_digest
    document = live.document
    assert document is not None  # summary.has_document: the body parses
    rendered_as = desired
    desired, base = _keeping(make, desired, document, base)
    if live_digest == desired[MARKER_FIELD]["renderDigest"]:
        return PlanEntry(status=Status.IN_SYNC, **base)
    if as_written(document, marker.get("renderDigest"), digest=live_digest) or _only_locked_tighter(
        document, rendered_as, marker.get("renderDigest")
    ):
        return _changed(Status.UPDATE, document, desired, base)
    return _drift_entry(document, desired, render_digests(rendered_as, desired), base, marker, written_before)


def _keeping(
    make: Callable[..., dict[str, Any]],
    desired: dict[str, Any],
    live: Mapping[str, Any],
    base: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """desired with what a write keeps of the live pipeline (provenance.kept_from), and base with
    the digest of exactly that: the approval binds what will be written."""
    if not kept_from(live):
        return desired, base
    kept = make(keep_from=live)
    return kept, {**base, "digest": plan_digest(str(base["key"]), base.get("live_etag"), kept)}


def _only_locked_tighter(live: Mapping[str, Any], rendered: Mapping[str, Any], written: object) -> bool:
    """True when all a person changed since pipeline-sync wrote live is a stricter lock, which a
    write keeps: then nothing of theirs is lost, and the change is an ordinary update."""
    if "allowUnlockUi" not in kept_from(live):
        return False
    return as_written({**live, "locked": rendered["locked"]}, written)


def _unmanaged_at_our_id(
    target: Target, live: LiveObject, make: Callable[..., dict[str, Any]], base: dict[str, Any]
) -> PlanEntry:
    """An unmanaged or unreadable object sits at the target's id: adopt it when pinned, else conflict.

    Only a pinned id adopts, and only a pipeline of the target's own application: a pin never
    takes over another team's pipeline. Adoption is an update that only a person may approve;
    it keeps the pipeline's index and a stricter lock, as every write does.
    """
    summary = live.summary
    pipeline_id = str(base["pipeline_id"])
    what = "is not managed by pipeline-sync"
    if not summary.has_document:
        what = f"is unreadable ({live.problem})"
    elif target.pinned_id:
        application = summary.application
        if (application or "").lower() == target.application.lower() and live.document is not None:
            desired, base = _keeping(make, make(), live.document, base)
            return _changed(
                Status.UPDATE,
                live.document,
                desired,
                base,
                adopt=True,
                messages=(
                    f"adopts the unmanaged pipeline {pipeline_id} pinned in {target.source_file}; "
                    "a person must approve an adoption",
                ),
            )
        return PlanEntry(
            status=Status.CONFLICT,
            messages=(
                f"{target.source_file} pins id {pipeline_id} for {target.key}, but that pipeline belongs "
                f"to application {application!r}, not {target.application!r}; a pin never takes over another "
                "application's pipeline. Remove the pin.",
            ),
            **base,
        )
    return PlanEntry(
        status=Status.CONFLICT,
        messages=(
            f"the live object at this pipeline's id {pipeline_id} {what}; it is left alone. "
            "Pin a different id or adopt it.",
        ),
        **base,
    )


def _drift_entry(
    live: Mapping[str, Any],
    desired: Mapping[str, Any],
    rendered_as: frozenset[str],
    base: dict[str, Any],
    marker: Mapping[str, Any],
    written: Mapping[str, Any] | None,
) -> PlanEntry:
    """A person changed the live pipeline: in Deck only, or while the catalog changed too.

    rendered_as holds every renderDigest the marker would hold had pipeline-sync written
    today's render (with or without what it keeps of the live pipeline, under today's or the
    legacy normalisation): the catalog changed since the write only when it holds none of them.
    """
    written_digest = marker.get("renderDigest")
    before: Mapping[str, Any] | None = desired
    kind = "deck"
    if written_digest not in rendered_as:
        kind, before = "both", _verified(written, written_digest)
    if before is None:
        return _changed(
            Status.DRIFT,
            live,
            desired,
            base,
            drift_kind=kind,
            messages=(
                "changed in Deck and in the catalog/templates since pipeline-sync wrote it; the fields "
                "a person changed can't be separated from the catalog's change: no version "
                "pipeline-sync wrote was found in the bucket's history (that needs S3 versioning). "
                "The diff shows both; check it for a hotfix to carry into the catalog.",
            ),
        )
    person = semantic_diff(normalise(before), normalise(live))
    fields = tuple(changed_paths(person))
    if kind == "deck":
        message = "changed in Deck since pipeline-sync wrote it; applying overwrites these fields: "
        message += ", ".join(fields)
    else:
        catalog_fields = changed_paths(semantic_diff(normalise(before), normalise(desired)))
        message = (
            f"changed in Deck since pipeline-sync wrote it (a person changed {', '.join(fields)}) "
            f"and in the catalog/templates (which change {', '.join(catalog_fields)}); applying "
            "overwrites the person's fields: carry a hotfix into the catalog first if it should stay"
        )
    return _changed(
        Status.DRIFT,
        live,
        desired,
        base,
        drift_kind=kind,
        drift_fields=fields,
        drift_yaml=to_yaml(person),
        messages=(message,),
    )


def _verified(written: Mapping[str, Any] | None, digest: object) -> Mapping[str, Any] | None:
    """written, when it is exactly what the live marker says pipeline-sync rendered."""
    if written is None or not as_written(written, digest):
        return None
    return written


def _changed(
    status: Status,
    live: Mapping[str, Any] | None,
    desired: Mapping[str, Any] | None,
    base: dict[str, Any],
    *,
    adopt: bool = False,
    messages: tuple[str, ...] = (),
    drift_kind: str | None = None,
    drift_fields: tuple[str, ...] = (),
    drift_yaml: str = "",
) -> PlanEntry:
    old = normalise(live) if live is not None else None
    new = normalise(desired) if desired is not None else None
    diff = semantic_diff(old, new)
    key = str(base["key"])
    names = [
        *key.split("/"),
        str(base.get("pipeline_id") or ""),
        str(base.get("application") or ""),
    ]
    # A create's diff is the whole pipeline: cluster creates by template instead.
    template = split_key(key)[2] or key
    signature_source = {"status": str(status), "diff": {} if status is Status.CREATE else diff}
    return PlanEntry(
        status=status,
        desired=desired,
        diff=diff,
        diff_yaml=to_yaml(diff) if diff else "",
        unified=unified_diff(old, new, key),
        signature=(f"create:{template}" if status is Status.CREATE else "")
        + fleet_signature(_blank_uuids(signature_source), names),
        adopt=adopt,
        messages=messages,
        drift_kind=drift_kind,
        drift_fields=drift_fields,
        drift_yaml=drift_yaml,
        **base,
    )


def _blank_uuids(data: Any) -> Any:
    return json.loads(_UUID.sub("<uuid>", json.dumps(data, sort_keys=True)))


def _leftover_entry(
    catalog: Catalog, key: str, obj: LiveObject, written: Mapping[str, Any] | None
) -> PlanEntry:
    """A managed live pipeline whose target is not in the catalog."""
    service, stack, _ = split_key(key)
    doc = obj.document or {}
    base: dict[str, Any] = dict(
        key=key,
        stack=stack,
        pipeline_id=obj.pipeline_id,
        application=doc.get("application"),
        name=doc.get("name"),
        live_etag=obj.etag,
    )
    if catalog.errors:
        # Argo CD's rule: never prune while the desired state is partly unknown. A renamed or
        # broken service file must not turn its live pipelines into deletes.
        files = ", ".join(sorted({e.location.file for e in catalog.errors}))
        own = "its service file failed to load" if service in catalog.failed_services else "it is not planned"
        return PlanEntry(
            status=Status.UNKNOWN,
            digest=plan_digest(key, obj.etag, None),
            messages=(
                f"unknown (catalog error): {own}; nothing is deleted while any catalog file fails to "
                f"load ({files})",
            ),
            **base,
        )
    siblings = [t for t in catalog.targets.values() if t.service == service]
    prune = siblings[0].prune if siblings else catalog.prune
    if not prune:
        return PlanEntry(
            status=Status.ORPHAN,
            digest=plan_digest(key, obj.etag, None),
            messages=("no longer in the catalog; set `prune: true` to delete it, or remove it by hand",),
            **base,
        )
    messages: tuple[str, ...] = (
        "no longer in the catalog, and pruning is on: deleting it needs approval like any change",
    )
    written_digest = (marker_of(obj.document) or {}).get("renderDigest")
    if obj.document is not None and not as_written(obj.document, written_digest):
        before = _verified(written, written_digest)
        fields = changed_paths(semantic_diff(normalise(before), normalise(obj.document))) if before else []
        changed = f" ({', '.join(fields)})" if fields else ""
        messages += (
            f"a person changed it{changed} since pipeline-sync wrote it; deleting discards that too",
        )
    return _changed(
        Status.DELETE,
        obj.document,
        None,
        {**base, "digest": plan_digest(key, obj.etag, None)},
        messages=messages,
    )


def after_write(entry: PlanEntry, etag: str | None) -> PlanEntry | None:
    """What the plan of entry's key is once its write landed at etag: in sync (None after a delete)."""
    if entry.status is Status.DELETE or entry.desired is None:
        return None
    return replace(
        entry,
        status=Status.IN_SYNC,
        live_etag=etag,
        digest=plan_digest(entry.key, etag, entry.desired),
        messages=(),
        diff={},
        diff_yaml="",
        unified="",
        drift_kind=None,
        drift_fields=(),
        drift_yaml="",
        signature=None,
        adopt=False,
    )


def rollback_entry(
    key: str,
    pipeline_id: str,
    live: LiveObject | None,
    restored: Mapping[str, Any],
    version_id: str,
    *,
    stack: str | None = None,
) -> PlanEntry:
    """An entry that writes an earlier S3 version back: approved and applied like any other.

    Its digest binds the key, the live ETag and the restored document, exactly as a catalog
    entry's binds the rendered one; apply re-reads both instead of rendering.
    """
    etag = live.etag if live is not None else None
    base: dict[str, Any] = dict(
        key=key,
        stack=stack,
        pipeline_id=pipeline_id,
        application=restored.get("application"),
        name=restored.get("name"),
        live_etag=etag,
        digest=plan_digest(key, etag, restored),
        source=f"{ROLLBACK_SOURCE}{version_id}",
    )
    status = Status.UPDATE if live is not None else Status.CREATE
    what = "the live pipeline back to" if live is not None else "the deleted pipeline from"
    return _changed(
        status,
        live.document if live is not None else None,
        restored,
        base,
        messages=(f"rolls {what} S3 version {version_id}",),
    )


def fleet_summary(plan: Plan, limit: int = 20) -> dict[str, Any]:
    """Counts per status and stack, and clusters of the same change across pipelines."""
    by_stack: dict[str, Counter[str]] = defaultdict(Counter)
    clusters: dict[str, list[PlanEntry]] = defaultdict(list)
    for entry in plan.entries.values():
        by_stack[entry.stack or "?"][str(entry.status)] += 1
        if entry.actionable and entry.signature:
            clusters[entry.signature].append(entry)
    ordered = sorted(clusters.values(), key=lambda group: (-len(group), group[0].key))
    return {
        "counts": plan.counts(),
        "by_stack": {stack: dict(sorted(c.items())) for stack, c in sorted(by_stack.items())},
        "clusters": [
            {
                "count": len(group),
                "status": sorted({str(e.status) for e in group}),
                "stacks": dict(sorted(Counter(e.stack or "?" for e in group).items())),
                "example": group[0].key,
                "keys": [e.key for e in group[:limit]],
                "example_diff": group[0].diff_yaml,
            }
            for group in ordered
        ],
        "drift": sorted(k for k, e in plan.entries.items() if e.status is Status.DRIFT),
        "conflict": sorted(k for k, e in plan.entries.items() if e.status is Status.CONFLICT),
        "invalid": sorted(k for k, e in plan.entries.items() if e.status is Status.INVALID),
        "delete": sorted(k for k, e in plan.entries.items() if e.status is Status.DELETE),
        "pending": sorted(k for k, e in plan.entries.items() if e.actionable),
    }
