"""Web applications that put their writes through a Batcher.

``ingest`` contains what the Flask and Django examples share: configuration
from environment variables, request validation, the SQLite datastore and
the service that waits for each request's batches.
"""
