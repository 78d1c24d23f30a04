"""URL configuration: ``POST /ingest``."""

from __future__ import annotations

from django.urls import path

from .ingest.views import ingest

urlpatterns = [path("ingest", ingest, name="ingest")]
