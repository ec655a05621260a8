"""One dynamic partition per managed pipeline, keyed service/stack/template."""

from __future__ import annotations

import dagster as dg

PARTITIONS_NAME = "pipelines"

pipeline_partitions = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)
