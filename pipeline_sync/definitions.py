"""The Dagster code location (workspace.yaml points here): everything defined in pipeline_sync.defs.

Modules under defs/ are discovered, not listed: an asset, check, job, sensor or schedule added
to any of them loads without touching this file.
"""

from __future__ import annotations

import warnings

import dagster as dg

import pipeline_sync.defs
from pipeline_sync.defs.resources import default_resources

with warnings.catch_warnings():
    # Dagster marks the package loader "preview"; its replacement, load_from_defs_folder, finds
    # defs/ through pyproject.toml, which an installed package does not have.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    # in_process_executor: also for runs the UI launches from an asset page (Dagster's implicit
    # asset job), so a one-partition run does not wait for a step subprocess to start.
    defs = dg.load_definitions_from_package_module(
        pipeline_sync.defs, resources=default_resources(), executor=dg.in_process_executor
    )
