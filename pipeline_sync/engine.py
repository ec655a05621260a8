"""The engine: the two verbs every entry point calls, plan and apply, and the one approval rule.

The CLI, the Dagster assets and sensors, adopt, rollback and the bench plan through `plan` and
write through `apply`; none of them builds a plan or writes on its own. This is also the one
place that decides what a plan may read from caches (anything: they only speed it up) and what
a write decision may read (nothing cached: a fresh render and a fresh read of the object it
replaces, with ownership computed from that body).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pipeline_sync.approvers import ApproverPolicy, Judgement, judge, refusal_message
from pipeline_sync.cachefiles import CacheSettings
from pipeline_sync.canonical import canonical_json
from pipeline_sync.catalog import Catalog
from pipeline_sync.errors import StalePlanError, StoreError
from pipeline_sync.fleet_summary import Related
from pipeline_sync.gcpause import gc_paused
from pipeline_sync.history import written_documents
from pipeline_sync.live import LiveObject
from pipeline_sync.plan import Plan, PlanEntry, after_write, build_plan, spliced_texts
from pipeline_sync.provenance import MARKER_FIELD, ManagedTexts, render_digest_of, signature_marker, signed_by
from pipeline_sync.rendering import RenderOutcome, Sources, render_all
from pipeline_sync.signing import SignedApproval, SigningError, now_utc, store_identity
from pipeline_sync.status import Status
from pipeline_sync.store import PermissionRefusedError, Store
from pipeline_sync.store.front50 import WRITER, now_ms

POLICY_PREFIX = "policy:"
AUTO_APPROVER = "policy:approval=auto"


@dataclass(frozen=True)
class Selection:
    """Which keys a plan covers: every key, the keys matching a glob, or listed keys."""

    pattern: str | None = None
    keys: frozenset[str] | None = None

    @classmethod
    def of(cls, keys: Iterable[str]) -> Selection:
        return cls(keys=frozenset(keys))

    @property
    def everything(self) -> bool:
        return self.pattern is None and self.keys is None

    def matches(self, key: str) -> bool:
        if self.keys is not None:
            return key in self.keys
        return self.pattern is None or fnmatch.fnmatchcase(key, self.pattern)


EVERYTHING = Selection()


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of one entry, for the audit trail and the exit code."""

    key: str
    outcome: str  # applied | stale | failed | skipped | refused
    message: str
    status: str | None = None
    etag: str | None = None
    version_id: str | None = None
    approver: str | None = None
    # The entry as it stands after this result: what a re-plan would show, without re-listing.
    after: PlanEntry | None = None
    # Who signed the approval written ("alice (SHA256:...), ..."), where the stack has approvers.
    signed_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in {"applied", "skipped"}


# -- plan -------------------------------------------------------------------------------------


def load_workspace(catalog_dir: Path, templates_dir: Path, caches: CacheSettings | None = None) -> Sources:
    """The catalog and templates, loaded once per run; the render cache placed by caches."""
    with gc_paused():  # tens of thousands of acyclic values: nothing for the cyclic GC to find
        return Sources.load(catalog_dir, templates_dir, caches=caches)


def plan(workspace: Sources, store: Store, selection: Selection = EVERYTHING) -> Plan:
    """The plan of the selected keys as things stand: renders and live summaries may come from
    caches. Where a person edited a managed pipeline, the version pipeline-sync last wrote is
    looked up in the store's history, so the plan can name the person's fields.

    A plan of a few listed keys (at most NARROW_MAX) on a store that can read just what they
    need (`read_related`: the S3 fleet summary, the SQL store's own indexes) reads only that."""
    return _plan(workspace, store, selection, fresh=False)


def _plan(workspace: Sources, store: Store, selection: Selection, *, fresh: bool) -> Plan:
    read_related = _related_reader(store, selection)
    if read_related is None and not fresh:
        return plan_loading(lambda: workspace, store, selection)[1]
    with gc_paused():
        outcomes = _render_selected(workspace, selection, use_cache=not fresh)
    with gc_paused():  # the store reads may cache, parse and summarise thousands of objects
        if read_related is not None:
            related = _related(workspace, selection, outcomes)
            live: Mapping[str, LiveObject] = read_related(related)
            if fresh and _names_something_new(outcomes, live):
                # A write decision that gives a pipeline a name: which objects could collide is
                # checked against a listing, not taken from the summary alone.
                live = read_related(related, listed=True)
        else:
            live = _fresh_live(workspace, store, selection)
    return _plan_against(workspace, store, live, selection, outcomes, history=not fresh)


def plan_loading(
    load: Callable[[], Sources], store: Store, selection: Selection = EVERYTHING
) -> tuple[Sources, Plan]:
    """The workspace load() returns and plan() of it, the store read in a thread from the start.

    A fleet plan's read (the listing, the local cache, the vouchers, any bodies) needs neither the
    catalog nor the renders, and waits mostly on the store: it runs while this thread loads the
    catalog and renders (forked workers, which touch nothing the reading thread holds). An error of
    either side is raised once both are done, so no read outlives the plan that started it; an
    interrupt (Ctrl-C, a stop signal) is raised at once, abandoning the read (_in_background). A plan
    of a few listed keys reads what its renders name, so it loads and renders first.

    The renders made are stored in the render cache while the plan is made from them
    (RenderCache.writes_behind), and are stored when this returns or raises."""
    if _related_reader(store, selection) is not None:
        workspace = load()
        return workspace, plan(workspace, store, selection)
    with gc_paused():
        reading = _in_background(lambda: _read_everything(store))
        try:
            workspace = load()
        except Exception:
            wait([reading])
            raise
    with workspace.cache.writes_behind():
        with gc_paused():
            try:
                outcomes = _render_selected(workspace, selection, use_cache=True)
                texts = spliced_texts(workspace.catalog, outcomes)  # needs no live object: while reading
            except Exception:
                wait([reading])
                raise
            live = reading.result()
        return workspace, _plan_from(workspace, store, selection, outcomes, live, texts)


def _render_selected(
    workspace: Sources, selection: Selection, *, use_cache: bool
) -> dict[str, RenderOutcome]:
    """render_all of the targets selection matches (every target: all of them)."""
    keys = sorted(k for k in workspace.catalog.targets if selection.matches(k))
    return render_all(workspace, None if selection.everything else keys, use_cache=use_cache, with_texts=True)


def _in_background(call: Callable[[], Mapping[str, LiveObject]]) -> Future[Mapping[str, LiveObject]]:
    """call() in a daemon thread, its result or what it raised in the future returned. A daemon,
    so Ctrl-C or a stop signal in this thread leaves at once instead of waiting for a read of the
    whole store (an executor's thread would be joined at exit)."""
    future: Future[Mapping[str, LiveObject]] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to the planning thread, which raises it
            future.set_exception(exc)

    threading.Thread(target=run, name="pipeline-sync-read", daemon=True).start()
    return future


def _plan_from(
    workspace: Sources,
    store: Store,
    selection: Selection,
    outcomes: Mapping[str, RenderOutcome],
    live: Mapping[str, LiveObject],
    texts: Mapping[str, ManagedTexts | None],
) -> Plan:
    """The plan from every live object: the bodies it will open read ahead (in a thread, while
    the entries before them are made), and made again from bodies alone when one of them
    contradicted what the fleet summary vouched for it. texts are spliced_texts of outcomes."""
    with gc_paused():
        reading = _prefetch(store, workspace.catalog, live, outcomes, texts)
    try:
        the_plan = _plan_against(workspace, store, live, selection, outcomes, history=True, texts=texts)
    except Exception:
        with contextlib.suppress(Exception):
            reading()  # no read outlives the plan (an interrupt leaves at once: a daemon thread)
        raise
    reading()
    if _misled(store):
        # A body the plan read contradicted the fleet summary's voucher for it: plan again from
        # bodies only (the summary is then rewritten from them).
        with gc_paused():
            live = _read_everything(store, vouched=False)
        the_plan = _plan_against(workspace, store, live, selection, outcomes, history=True, texts=texts)
    return the_plan


def _read_everything(store: Store, *, vouched: bool = True) -> Mapping[str, LiveObject]:
    """Every live object. A store that keeps a fleet summary (S3) rewrites it from what it read
    and, with vouched, takes from it the summaries of objects its local cache lacks."""
    summarised = getattr(store, "read_live_summarised", None)
    return summarised(vouched=vouched) if callable(summarised) else store.read_live()


def _prefetch(
    store: Store,
    catalog: Catalog,
    live: Mapping[str, LiveObject],
    outcomes: Mapping[str, RenderOutcome],
    texts: Mapping[str, ManagedTexts | None],
) -> Callable[[], None]:
    """Have the store read ahead, in parallel, the bodies the plan will open among objects it
    deferred (a fresh pod's vouchers): a managed pipeline whose render changed, one a person
    edited, one whose key left the catalog, an unmanaged one at a pinned id. A guess only: a body
    it misses is read when opened, one it reads in vain costs a request. texts are spliced_texts of
    outcomes: a render's renderDigest is taken from there when it was spliced.

    Returns what waits for the reads to end (and raises what they raised): a store that reads
    ahead in the background (S3Store.prefetch_in_background) is still reading when this returns;
    one that only has prefetch() has read everything."""
    in_background = getattr(store, "prefetch_in_background", None)
    prefetch = getattr(store, "prefetch", None)
    deferred = {pid.lower(): obj for pid, obj in live.items() if obj.deferred}
    if not (callable(in_background) or callable(prefetch)) or not deferred:
        return _read_nothing
    wanted: dict[str, LiveObject] = {}
    for key, outcome in outcomes.items():
        rendered = outcome.rendered
        obj = deferred.get(rendered.pipeline_id.lower()) if rendered is not None else None
        if obj is None or rendered is None:
            continue
        marker = obj.summary.marker
        if marker is None:
            if outcome.target.pinned_id:
                wanted[obj.key] = obj
        elif marker.get("key") == key:
            spliced = texts.get(key)
            desired = (
                spliced.render_digest
                if spliced is not None
                else render_digest_of(rendered.canonical, key=key, source_file=outcome.target.source_file)
            )
            if obj.summary.content_digest != desired:
                wanted[obj.key] = obj
    for obj in deferred.values():
        marker = obj.summary.marker
        edited = marker is not None and obj.summary.content_digest != marker.get("renderDigest")
        if edited or (marker is not None and marker.get("key") not in catalog.targets):
            wanted[obj.key] = obj
    if callable(in_background):
        waits: Callable[[], None] = in_background(list(wanted.values()))
        return waits
    assert callable(prefetch)
    prefetch(list(wanted.values()))
    return _read_nothing


def _read_nothing() -> None:
    """What _prefetch returns when nothing is still being read."""


def _misled(store: Store) -> bool:
    """Whether the store's fleet summary vouched for an object its body contradicted."""
    misled = getattr(store, "summary_misled", None)
    return bool(misled()) if callable(misled) else False


# A selection of at most this many listed keys is planned from what they need, not the fleet.
NARROW_MAX = 32


class RelatedReader(Protocol):
    """A store's `read_related` (S3Store.read_related, SqlStore.read_related)."""

    def __call__(self, related: Related, *, listed: bool = False) -> Mapping[str, LiveObject]: ...


def _related_reader(store: Store, selection: Selection) -> RelatedReader | None:
    """The store's `read_related` when selection is a few listed keys and the store has one."""
    if selection.keys is None or len(selection.keys) > NARROW_MAX:
        return None
    reader = getattr(store, "read_related", None)
    return reader if callable(reader) else None


def _related(workspace: Sources, selection: Selection, outcomes: Mapping[str, RenderOutcome]) -> Related:
    """What a plan of selection must read: each key's id (pinned or derived, in the catalog or
    not), the application and name each render would write, and the keys themselves (markers)."""
    catalog = workspace.catalog
    keys = sorted(selection.keys or ())
    names = []
    for outcome in outcomes.values():
        if outcome.rendered is not None:
            document = outcome.rendered.document
            application, name = document.get("application"), document.get("name")
            if isinstance(application, str) and isinstance(name, str):
                names.append((application, name))
    return Related.of([catalog.pipeline_id(k) for k in keys], names, keys)


def _names_something_new(outcomes: Mapping[str, RenderOutcome], live: Mapping[str, LiveObject]) -> bool:
    """True when a render would put an (application, name) at its id that is not there now."""
    for outcome in outcomes.values():
        if outcome.rendered is None:
            continue
        document = outcome.rendered.document
        obj = live.get(outcome.rendered.pipeline_id.lower())
        if obj is None:
            return True
        now = (str(obj.summary.application).lower(), str(obj.summary.name).lower())
        if now != (str(document.get("application")).lower(), str(document.get("name")).lower()):
            return True
    return False


def _plan_against(
    workspace: Sources,
    store: Store,
    live: Mapping[str, LiveObject],
    selection: Selection,
    outcomes: Mapping[str, RenderOutcome],
    *,
    history: bool,
    texts: Mapping[str, ManagedTexts | None] | None = None,
) -> Plan:
    scope = None
    if not selection.everything:
        scope = [k for k in _marked_keys(live) if selection.matches(k)]
    written: dict[str, dict[str, Any]] = {}
    if history:
        wanted = None if selection.everything else [*outcomes, *(scope or [])]
        written = written_documents(store, live, wanted)
    return build_plan(workspace.catalog, outcomes, live, scope=scope, written=written, texts=texts)


def _marked_keys(live: Mapping[str, LiveObject]) -> list[str]:
    return [str(m["key"]) for obj in live.values() if (m := obj.summary.marker)]


def fresh_plan(workspace: Sources, store: Store, keys: Iterable[str]) -> Plan:
    """The plan a write decision is made from: every render fresh (no render cache), and every
    object an entry would replace or delete read afresh from the store, so its ownership comes
    from its real body. Other live summaries (for name collisions) may come from the cache; for
    a few keys on a store with `read_related`, every object read is read afresh, and the store's
    summary only names which objects could collide (pipeline_sync.fleet_summary)."""
    return _plan(workspace, store, Selection.of(keys), fresh=True)


def _fresh_live(workspace: Sources, store: Store, selection: Selection) -> dict[str, LiveObject]:
    """Every live object, with each one selection would replace or delete read afresh."""
    catalog = workspace.catalog
    live = dict(store.read_live())
    replaced = {catalog.pipeline_id(k).lower() for k in selection.keys or () if k in catalog.targets}
    replaced |= {
        obj.pipeline_id.lower()
        for obj in live.values()
        if (m := obj.summary.marker) and selection.matches(str(m["key"]))
    }
    for pipeline_id in sorted(replaced):
        fresh = store.read_pipeline(pipeline_id)
        if fresh is None:
            live.pop(pipeline_id, None)
        else:
            live[pipeline_id] = fresh
    return live


# -- the approval rule ------------------------------------------------------------------------


def is_reserved_approver(approver: str) -> bool:
    """True for names only the stack policy may use (policy:...), however they are spelled."""
    return approver.strip().lower().startswith(POLICY_PREFIX)


@dataclass(frozen=True)
class Refusal:
    """Why an approval is not written: stale (the plan moved), failed (not a change that can be
    written), or refused (the approval itself is not valid for this entry)."""

    outcome: str
    message: str


def approval_refusal(
    entry: PlanEntry | None,
    key: str,
    digest: str,
    *,
    approver: str,
    policy: bool,
    approvers: ApproverPolicy | None = None,
) -> Refusal | None:
    """Why an approval of (key, digest) by approver must not be written, or None when it may.

    entry is the current plan of key (for a write: the fresh plan). One rule for every path:
    the CLI's apply, the Dagster approval asset, the approval sensor and publishing. approvers
    are key's (Catalog.approver_policy): stack policy never approves where they are declared,
    and a person's approval must then also be signed (signed_approval decides that).
    """
    if is_reserved_approver(approver) and not policy:
        return Refusal(
            "refused", f"{key}: approver names beginning with {POLICY_PREFIX!r} are reserved for stack policy"
        )
    if policy and approver != AUTO_APPROVER:
        return Refusal("refused", f"{key}: a policy approval must name its policy ({AUTO_APPROVER})")
    if policy and approvers is not None:
        return Refusal(
            "refused",
            f"{key}: stack policy cannot approve it: its stack requires {approvers.describe()}, and a policy "
            "signs nothing",
        )
    if entry is None:
        return Refusal("stale", f"{key}: no longer planned (it left the catalog and the store)")
    if entry.digest != digest:
        return Refusal(
            "stale",
            f"{key}: stale plan: the approved digest {digest[:12]} is not the current plan "
            f"({entry.digest[:12]}, {entry.status}); nothing was written. Plan and approve again.",
        )
    if entry.status is Status.IN_SYNC:
        return None
    if not entry.actionable:
        return Refusal(
            "failed", f"{key}: {entry.status} entries cannot be applied: " + "; ".join(entry.messages)
        )
    if policy and not entry.policy_approvable:
        what = f"{entry.status} (an adoption)" if entry.adopt else str(entry.status)
        return Refusal(
            "refused",
            f"{key}: stack policy cannot approve this {what}: adoptions, drift, deletes and rollbacks "
            "always need a person, and policy covers only stacks with `approval: auto`",
        )
    return None


@dataclass(frozen=True)
class SignedDecision:
    """Whether the signed approvals given are enough to write (key, digest): the refusal, else
    who approved (the distinct principals) and what the marker records of their signatures."""

    refusal: Refusal | None
    approver: str
    marker: Mapping[str, Any] | None = None
    judgement: Judgement | None = None

    @property
    def actor(self) -> str:
        """The one user the store writes as (Front50's X-SPINNAKER-USER, SQL's last_modified_by):
        the first signer where there are signatures, else the approver; approvedBy names them all."""
        return self.judgement.principals[0] if self.judgement else self.approver


def signed_approval(
    catalog: Catalog,
    store: Store,
    key: str,
    digest: str,
    signed: Sequence[SignedApproval],
    *,
    approver: str,
) -> SignedDecision:
    """Verify the signed approvals of (key, digest) against key's approvers: every signature in the
    approval namespace, by a key the allowed_signers file lists for the statement's principal,
    over a statement naming exactly this key, digest and store, not expired; then enough distinct
    people. A key without approvers is approved by approver's name, as before."""
    approvers = catalog.approver_policy(key)
    if approvers is None:
        return SignedDecision(None, approver)
    judgement = judge(approvers, signed, key=key, digest=digest, store=store_identity(store), now=now_utc())
    if not judgement.enough:
        return SignedDecision(
            Refusal("refused", refusal_message(judgement, key, approvers)), approver, None, judgement
        )
    who = ", ".join(judgement.principals)
    return SignedDecision(None, who, signature_marker(judgement.approvers), judgement)


# -- apply ------------------------------------------------------------------------------------


def apply(
    workspace: Sources,
    store: Store,
    approved: Mapping[str, str],
    *,
    approver: str,
    policy: bool = False,
    signed: Sequence[SignedApproval] = (),
) -> list[ApplyResult]:
    """Write each approved (key -> plan digest) that is still exactly the fresh plan; refuse the rest.

    Keys whose stack declares approvers are written only with enough verified signed approvals
    among signed (each names its key; see signed_approval); the marker then records them, and
    the approver written is their principals. A failure on one entry never blocks the others.
    Change signals an earlier interrupted run left unbumped are bumped first.
    """
    keys = sorted(approved)
    try:
        current = fresh_plan(workspace, store, keys)
        store.repair_change_signals()
    except StoreError as exc:
        return [ApplyResult(k, "failed", str(exc)) for k in keys]
    catalog = workspace.catalog
    return [
        _apply_one(catalog, store, current.entries.get(key), key, approved[key], approver, policy, signed)
        for key in keys
    ]


def _apply_one(
    catalog: Catalog,
    store: Store,
    entry: PlanEntry | None,
    key: str,
    digest: str,
    approver: str,
    policy: bool,
    signed: Sequence[SignedApproval],
) -> ApplyResult:
    status = str(entry.status) if entry is not None else None
    approvers = catalog.approver_policy(key)
    refusal = approval_refusal(entry, key, digest, approver=approver, policy=policy, approvers=approvers)
    if refusal is not None:
        return ApplyResult(key, refusal.outcome, refusal.message, status=status)
    assert entry is not None
    if entry.status is Status.IN_SYNC:
        return ApplyResult(key, "skipped", f"{key}: already in sync", status=status, after=entry)
    try:
        decision = signed_approval(catalog, store, key, digest, signed, approver=approver)
        if decision.refusal is not None:
            return ApplyResult(key, decision.refusal.outcome, decision.refusal.message, status=status)
        result = write_entry(
            store, entry, decision.approver, extra_marker=decision.marker, actor=decision.actor
        )
        return replace(result, after=after_write(entry, result.etag), signed_by=signed_by(decision.marker))
    except StalePlanError as exc:
        return ApplyResult(key, "stale", f"{key}: {exc}", status=status)
    except SigningError as exc:
        return ApplyResult(key, "refused", f"{key}: {exc} Nothing was written.", status=status)
    except PermissionRefusedError as exc:  # Spinnaker's own refusal (Fiat): not a failure to retry
        return ApplyResult(key, "refused", f"{key}: {exc}", status=status)
    except StoreError as exc:
        return ApplyResult(key, "failed", f"{key}: {exc}", status=status)


def write_entry(
    store: Store,
    entry: PlanEntry,
    approver: str,
    *,
    extra_marker: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> ApplyResult:
    """Write one entry the approval rule let through, under its precondition.

    approver is what the marker's approvedBy records; actor (default: approver) is the one user
    the store writes as, where it records one (modifier_of, an API store's user header).
    """
    assert entry.pipeline_id is not None
    actor = actor or approver
    if entry.status is Status.DELETE:
        assert entry.live_etag is not None
        if getattr(store, "acts_as_approver", False) is True:  # an API store deletes as the approver
            result = store.delete_pipeline(entry.pipeline_id, if_match=entry.live_etag, user=actor)  # type: ignore[call-arg]
        else:
            result = store.delete_pipeline(entry.pipeline_id, if_match=entry.live_etag)
        return ApplyResult(
            entry.key,
            "applied",
            f"{entry.key}: deleted {result.key}",
            "delete",
            None,
            result.version_id,
            approver,
        )
    assert entry.desired is not None and entry.application is not None
    # The application first: if it can't be written, nothing is, and a re-run does both.
    created_app = store.ensure_application(entry.application, entry.email)
    desired: Mapping[str, Any] = entry.desired
    if extra_marker:
        desired = {**desired, MARKER_FIELD: {**desired[MARKER_FIELD], **extra_marker}}
    body = stamped_body(
        desired, approver=approver, plan_digest=entry.digest, modified_by=modifier_of(store, actor)
    )
    result = store.put_pipeline(entry.pipeline_id, body, if_match=entry.live_etag)
    note = f" (created application {entry.application})" if created_app else ""
    if result.marker_error:
        note += f"; the change marker was not bumped ({result.marker_error}): Front50 sees it within a minute"
    return ApplyResult(
        entry.key,
        "applied",
        f"{entry.key}: {entry.status} -> {result.key}{note}",
        str(entry.status),
        result.etag,
        result.version_id,
        approver,
    )


def modifier_of(store: Store, approver: str) -> str:
    """Who a write's body names as lastModifiedBy: the approver where the store records that as its
    own "last modified by" (Front50's SQL store copies it into the row's last_modified_by, as
    Front50's API would from X-SPINNAKER-USER: the store declares `records_modifier = True`), else
    pipeline-sync (S3: the bytes Front50 reads are unchanged). The marker's approvedBy always
    names the approver."""
    return approver if getattr(store, "records_modifier", False) is True else WRITER


def stamped_body(
    desired: Mapping[str, Any], *, approver: str, plan_digest: str, modified_by: str = WRITER
) -> bytes:
    """The bytes to write: server fields Front50 expects, plus who approved which plan.

    modified_by is the body's lastModifiedBy (modifier_of: pipeline-sync, or on SQL the approver).
    writeId makes every write's bytes unique, so a retry that finds "its" bytes in the store
    knows they are its own, not an identical write by a racing apply.
    """
    document: dict[str, Any] = copy.deepcopy(dict(desired))
    document["updateTs"] = str(now_ms())
    document["lastModifiedBy"] = modified_by
    document[MARKER_FIELD] = {
        **document[MARKER_FIELD],
        "approvedBy": approver,
        "planDigest": plan_digest,
        "writeId": uuid.uuid4().hex,
    }
    return canonical_json(document).encode("utf-8")


def policy_refusals(workspace: Sources, store: Store, approved: Mapping[str, str]) -> dict[str, str | None]:
    """{key: refusal or None} for policy approvals of approved (key -> digest), checked before they
    are recorded against one fresh plan of all of them (one listing, a fresh read of each object
    they replace, fresh renders), so a tampered cache can never be auto-approved."""
    if not approved:
        return {}
    try:
        current = fresh_plan(workspace, store, approved)
    except StoreError as exc:
        return {key: f"{key}: {exc}" for key in approved}
    refusals: dict[str, str | None] = {}
    for key, digest in approved.items():
        refusal = approval_refusal(
            current.entries.get(key),
            key,
            digest,
            approver=AUTO_APPROVER,
            policy=True,
            approvers=workspace.catalog.approver_policy(key),
        )
        refusals[key] = refusal.message if refusal is not None else None
    return refusals
