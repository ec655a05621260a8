"""The naive loop the seed describes, written plainly: the baseline every figure is compared with.

For each target: compile its template (jinja2.Template, per call), render it, parse the YAML with
the pure-Python SafeLoader, GET the live object, DeepDiff the two, and dump any diff as YAML.
The only additions to the seed's loop are the stable ids and provenance marker pipeline-sync
writes (assign_identities, managed_document), so that its verdicts can be checked against
pipeline-sync's own.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from botocore.exceptions import ClientError
from deepdiff import DeepDiff

from pipeline_sync.canonical import canonical_json
from pipeline_sync.catalog import TEMPLATE_SUFFIX, Catalog, Target, load_catalog
from pipeline_sync.identity import assign_identities, pipeline_id_for
from pipeline_sync.provenance import managed_document, normalise
from pipeline_sync.store.s3 import PIPELINE_FILE


@dataclass
class NaiveResult:
    """Verdict counts and where the time went (seconds)."""

    in_sync: int = 0
    changed: int = 0
    missing: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("render", "get", "diff"), 0.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync,
            "changed": self.changed,
            "missing": self.missing,
            "seconds_by_phase": {k: round(v, 3) for k, v in self.seconds.items()},
        }


# The seed loop in the run issue 19's figures came from (bench/results/latest.md): per pipeline,
# in all and its render alone.
REFERENCE_NAIVE_MS = 14.8
REFERENCE_NAIVE_RENDER_MS = 7.5
REFERENCE_DATE = "2026-11-27"
PROBE_TARGETS = 40


def _pipeline_id(app_name: str, stack: str, template: str) -> str:
    return pipeline_id_for(f"{app_name}/{stack}/{template}")


def seed_render(key: str, target: Target, templates_dir: Path) -> dict[str, Any]:
    """The seed's render of one target: its template compiled for this call, rendered, parsed by
    the pure-Python loader, given its ids and marker. Pure CPU: the machine's speed in its units."""
    text = (templates_dir / f"{target.template}{TEMPLATE_SUFFIX}").read_text()
    template = jinja2.Template(text)  # compiled on every call, as the seed did
    yaml_text = template.render({**target.context, "pipeline_id": _pipeline_id})
    document = yaml.load(yaml_text, Loader=yaml.SafeLoader)  # the pure-Python loader
    pipeline_id = pipeline_id_for(key)
    assign_identities(document, pipeline_id, target.service)
    return managed_document(canonical_json(document), key=key, source_file=target.source_file)


def render_probe(catalog: Catalog, templates_dir: Path, count: int = PROBE_TARGETS) -> float:
    """The seed's render of the catalog's first count targets, in ms of this process's CPU each:
    how fast the machine runs right now, to set beside REFERENCE_NAIVE_RENDER_MS."""
    keys = sorted(catalog.targets)[:count]
    started = time.process_time()
    for key in keys:
        seed_render(key, catalog.targets[key], templates_dir)
    return 1000 * (time.process_time() - started) / max(len(keys), 1)


def naive_plan(
    catalog_dir: Path, templates_dir: Path, client: Any, bucket: str, root: str = "front50"
) -> NaiveResult:
    result = NaiveResult()
    catalog = load_catalog(catalog_dir, templates_dir)
    for key, target in sorted(catalog.targets.items()):
        started = time.perf_counter()
        desired = seed_render(key, target, templates_dir)
        rendered = time.perf_counter()
        pipeline_id = pipeline_id_for(key)  # for the GET: seed_render's own is inside the render's time
        try:
            response = client.get_object(Bucket=bucket, Key=f"{root}/pipelines/{pipeline_id}/{PIPELINE_FILE}")
            live = json.loads(response["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"NoSuchKey", "404"}:
                raise
            live = None
        fetched = time.perf_counter()
        if live is None:
            result.missing += 1
        else:
            patch = DeepDiff(normalise(live), normalise(desired))
            if patch:
                result.changed += 1
                yaml.dump(json.loads(patch.to_json()))  # the seed shows each diff as YAML
            else:
                result.in_sync += 1
        done = time.perf_counter()
        result.seconds["render"] += rendered - started
        result.seconds["get"] += fetched - rendered
        result.seconds["diff"] += done - fetched
    return result
