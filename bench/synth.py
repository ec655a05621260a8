"""Synthetic fleets: a catalog of N pipelines over several stacks and templates, and their live copies.

The live bucket is arranged from pipeline-sync's own renders, so most pipelines are in sync;
a few are pending updates (written from an older render), drifted (edited after writing),
missing (to be created), and a few unmanaged pipelines sit beside them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from pipeline_sync.canonical import canonical_json
from pipeline_sync.engine import stamped_body
from pipeline_sync.plan import build_plan
from pipeline_sync.provenance import managed_document
from pipeline_sync.rendering import Sources, render_all
from pipeline_sync.store.s3 import PIPELINE_FILE

TEMPLATES = Path(__file__).resolve().parent / "templates"
ROOT = "front50"
SEED_APPROVER = "bench-seed"

# Pipelines each service gets, per stack; services cycle through these shapes.
SHAPES: tuple[dict[str, list[str]], ...] = (
    {
        "dev": ["deploy", "smoke-test"],
        "qa": ["deploy", "smoke-test"],
        "stage": ["deploy", "rollback"],
        "prod": ["deploy", "deploy-canary", "rollback"],
    },
    {"dev": ["deploy"], "qa": ["deploy", "smoke-test"], "stage": ["deploy"], "prod": ["deploy", "rollback"]},
    {"dev": ["deploy"], "stage": ["deploy"], "prod": ["deploy", "deploy-canary"]},
)
PRODUCTS = ("shop", "media", "search", "ads", "identity", "payments", "social", "data")

# The template the "one template changed" scenario edits, and how.
CHANGED_TEMPLATE = "deploy-canary"
TEMPLATE_EDIT = ("Judge the canary at", "Judge canary health at")

# Baseline roles, per mille of the catalog's targets (chosen by a hash of the key).
MISSING_PER_MILLE = 2
UPDATE_PER_MILLE = 5
DRIFT_PER_MILLE = 3
UNMANAGED_PER_MILLE = 2

DEFAULTS: dict[str, Any] = {
    "prune": False,
    "vars": {
        "git_org": "example",
        "git_account": "git-bot",
        "values_repo": "https://git.example.com/api/v3/repos/example/deploy-values",
        "auto_deploy": False,
        "replicas": 2,
        "canary_weights": [10, 50],
        "slack_channel": "#deploys",
        "webhook_url": "https://hooks.example.com/spinnaker",
        "resources": {"cpu": "500m", "memory": "512Mi"},
        "smoke": {"image": "registry.example.com/qa/smoke:2.3.1", "suite": "default"},
        "helm": {
            "account": "harbor",
            "chart": "workload-chart",
            "chart_version": "1.4.0",
            "values_branch": "main",
        },
        "jenkins": {"master": "jenkins-main", "job": "common/docker-build"},
    },
    "stacks": {
        "dev": {"approval": "auto", "vars": {"auto_deploy": True, "replicas": 1}},
        "qa": {"vars": {"replicas": 1}},
        "stage": {},
        "prod": {"vars": {"replicas": 4, "helm": {"values_branch": "release"}}},
    },
}


@dataclass(frozen=True)
class Fleet:
    """A generated project directory (catalog/ and templates/) of exactly `size` pipelines."""

    root: Path
    size: int
    services: int

    @property
    def catalog_dir(self) -> Path:
        return self.root / "catalog"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def workspace(self) -> Sources:
        return Sources.load(self.catalog_dir, self.templates_dir)


@dataclass
class Baseline:
    """What the bucket holds at the start of every scenario, and the role of each target."""

    bodies: dict[str, bytes] = field(default_factory=dict)  # S3 key -> body
    roles: dict[str, str] = field(default_factory=dict)  # partition key -> role
    s3_keys: dict[str, str] = field(default_factory=dict)  # partition key -> S3 key

    def role_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.roles.values()).items()))


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)


def _stacks_for(index: int, remaining: int) -> dict[str, list[str]]:
    """The shape of service `index`, cut short so the fleet has exactly the size asked for."""
    stacks: dict[str, list[str]] = {}
    for stack, templates in SHAPES[index % len(SHAPES)].items():
        if remaining <= 0:
            break
        stacks[stack] = templates[:remaining]
        remaining -= len(stacks[stack])
    return stacks


def _service(index: int, stacks: Mapping[str, list[str]]) -> dict[str, Any]:
    product = PRODUCTS[index % len(PRODUCTS)]
    name = f"svc-{index:05d}"
    service: dict[str, Any] = {
        "name": name,
        "product": product,
        "team": f"{product}-team-{index % 7}",
        "email": f"{product}-team-{index % 7}@example.com",
        "namespace": f"{product}-{index % 13}",
        "git_repo": f"{name}-service",
        "vars": {"replicas": 2 + index % 3},
        "stacks": {},
    }
    for stack, templates in stacks.items():
        entry: dict[str, Any] = {"pipelines": list(templates)}
        if stack == "prod":
            entry["vars"] = {"replicas": 4 + index % 5, "canary_weights": [1 + index % 4, 10, 50]}
            if index % 11 == 0:
                entry["vars"]["resources"] = {"cpu": "2", "memory": "4Gi"}
        service["stacks"][stack] = entry
    return service


def write_fleet(root: Path, size: int) -> Fleet:
    """Write catalog/ and templates/ for `size` pipelines under root (replacing what is there)."""
    if root.exists():
        shutil.rmtree(root)
    services_dir = root / "catalog" / "services"
    services_dir.mkdir(parents=True)
    shutil.copytree(TEMPLATES, root / "templates")
    (root / "catalog" / "defaults.yaml").write_text(_dump(DEFAULTS))
    remaining, index = size, 0
    while remaining > 0:
        index += 1
        stacks = _stacks_for(index, remaining)
        remaining -= sum(len(t) for t in stacks.values())
        service = _service(index, stacks)
        (services_dir / f"{service['name']}.yaml").write_text(_dump(service))
    return Fleet(root=root, size=size, services=index)


def _per_mille(key: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}{key}".encode()).digest()[:4], "big") % 1000


def role_of(key: str) -> str:
    value = _per_mille(key)
    for role, limit in (
        ("missing", MISSING_PER_MILLE),
        ("update", MISSING_PER_MILLE + UPDATE_PER_MILLE),
        ("drift", MISSING_PER_MILLE + UPDATE_PER_MILLE + DRIFT_PER_MILLE),
    ):
        if value < limit:
            return role
    return "in-sync"


def edited_in_deck(body: bytes, who: str = "someone@example.com") -> bytes:
    """A person's edit in Deck: a changed field, the provenance marker kept."""
    document = json.loads(body)
    document["limitConcurrent"] = not document.get("limitConcurrent", True)
    document["lastModifiedBy"] = who
    return json.dumps(document, sort_keys=True).encode()


def baseline(fleet: Fleet) -> Baseline:
    """Render the fleet with pipeline-sync and arrange each target's live copy by its role."""
    workspace = fleet.workspace()
    if workspace.catalog.errors:
        raise RuntimeError(f"the generated catalog has errors: {workspace.catalog.errors[:3]}")
    outcomes = render_all(workspace)
    invalid = [o.problems for o in outcomes.values() if not o.valid]
    if invalid:
        raise RuntimeError(f"{len(invalid)} generated pipelines are invalid, e.g. {invalid[0]}")
    plan = build_plan(workspace.catalog, outcomes, {})
    result = Baseline()
    for key, entry in plan.entries.items():
        assert entry.desired is not None and entry.pipeline_id is not None
        role = role_of(key)
        result.roles[key] = role
        s3_key = f"{ROOT}/pipelines/{entry.pipeline_id}/{PIPELINE_FILE}"
        result.s3_keys[key] = s3_key
        if role == "missing":
            continue
        body = stamped_body(entry.desired, approver=SEED_APPROVER, plan_digest=entry.digest)
        if role == "update":
            rendered = outcomes[key].rendered
            assert rendered is not None
            older = copy.deepcopy(dict(rendered.document))
            older["description"] = f"{older.get('description', '')} (rendered by an older template)"
            target = workspace.catalog.targets[key]
            desired = managed_document(canonical_json(older), key=key, source_file=target.source_file)
            body = stamped_body(desired, approver=SEED_APPROVER, plan_digest="0" * 64)
        elif role == "drift":
            body = edited_in_deck(body)
        result.bodies[s3_key] = body
    for index in range(max(1, fleet.size * UNMANAGED_PER_MILLE // 1000)):
        pipeline_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-unmanaged-{index}"))
        document = {
            "id": pipeline_id,
            "application": f"legacy-{index % 17}",
            "name": f"hand-made-{index}",
            "stages": [{"refId": "1", "type": "wait", "name": "Wait", "waitTime": 30}],
            "triggers": [],
            "lastModifiedBy": "bob@example.com",
            "updateTs": "1700000000000",
        }
        result.bodies[f"{ROOT}/pipelines/{pipeline_id}/{PIPELINE_FILE}"] = canonical_json(document).encode()
    result.bodies[f"{ROOT}/pipelines/last-modified.json"] = b'{"lastModified": 1700000000000}'
    return result


def s3_client(endpoint_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=32, retries={"mode": "standard", "total_max_attempts": 5}),
    )


def put_all(client: Any, bucket: str, bodies: Mapping[str, bytes], workers: int = 16) -> None:
    """Write objects with a thread pool (moto over HTTP takes a few ms per request)."""

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=bucket, Key=item[0], Body=item[1], ContentType="application/json")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(put, bodies.items()):
            pass


def seed(client: Any, bucket: str, base: Baseline) -> None:
    client.create_bucket(Bucket=bucket)
    put_all(client, bucket, base.bodies)


def drift_keys(base: Baseline, fraction: float = 0.01) -> list[str]:
    """A deterministic `fraction` of the in-sync pipelines, to be edited in Deck."""
    in_sync = sorted(
        (k for k, r in base.roles.items() if r == "in-sync"), key=lambda k: _per_mille(k, "drift")
    )
    return in_sync[: max(1, round(len(base.roles) * fraction))]


def drifted_bodies(base: Baseline, keys: list[str]) -> dict[str, bytes]:
    return {base.s3_keys[k]: edited_in_deck(base.bodies[base.s3_keys[k]]) for k in keys}


def original_bodies(base: Baseline, keys: list[str]) -> dict[str, bytes]:
    """The same bytes as before, so the ETags (MD5 of the body) are what they were."""
    return {base.s3_keys[k]: base.bodies[base.s3_keys[k]] for k in keys}


def edit_template(fleet: Fleet, variant: int = 0) -> int:
    """Change one template so every pipeline rendered from it changes; returns how many use it.

    Each variant is a different edit of the same line of the shipped template (variant 0 is
    TEMPLATE_EDIT), so a repeated measurement finds none of its renders in a render cache: every
    variant changes the same pipelines, in the same one field."""
    path = fleet.templates_dir / f"{CHANGED_TEMPLATE}.yaml.j2"
    text = (TEMPLATES / path.name).read_text()
    if TEMPLATE_EDIT[0] not in text:
        raise RuntimeError(f"{TEMPLATES / path.name} no longer contains {TEMPLATE_EDIT[0]!r}")
    edit = TEMPLATE_EDIT[1] if variant == 0 else TEMPLATE_EDIT[1].replace(" at", f" (edit {variant}) at")
    path.write_text(text.replace(TEMPLATE_EDIT[0], edit))
    return sum(1 for key in iter_keys(fleet) if key.endswith(f"/{CHANGED_TEMPLATE}"))


def restore_template(fleet: Fleet) -> None:
    shutil.copy(
        TEMPLATES / f"{CHANGED_TEMPLATE}.yaml.j2", fleet.templates_dir / f"{CHANGED_TEMPLATE}.yaml.j2"
    )


def iter_keys(fleet: Fleet) -> Iterator[str]:
    for path in sorted((fleet.catalog_dir / "services").glob("*.yaml")):
        service = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        for stack, entry in service["stacks"].items():
            for template in entry["pipelines"]:
                yield f"{service['name']}/{stack}/{template}"
