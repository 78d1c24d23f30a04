"""A minimal Django project whose ``ingest`` app writes records through a
Batcher; ``ingest.apps`` explains when the Batcher starts."""
