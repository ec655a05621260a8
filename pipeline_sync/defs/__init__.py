"""Dagster adapter: partitions, resources, assets, checks, sensors and schedules over the core."""
