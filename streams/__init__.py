"""Vigil stream processing: the Faust app, ingest, alerting, metrics and the CLI."""
