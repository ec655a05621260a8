"""pipeline-sync: Spinnaker pipelines as code, published to Front50 through Dagster."""

__version__ = "0.1.0"
