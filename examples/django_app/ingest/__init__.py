"""The Django app that serves ``POST /ingest`` through a Batcher."""
