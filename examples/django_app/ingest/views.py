"""The ``POST /ingest`` view."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from examples.ingest import RETRY_AFTER_SECONDS

from .apps import get_service

__all__ = ["ingest"]


@require_POST
def ingest(request: HttpRequest) -> JsonResponse:
    """Write the posted records through the Batcher; see IngestService.ingest."""
    service = get_service()
    if service is None:
        return JsonResponse(
            {"error": "the ingest service is not running in this process"},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    result = service.ingest(request.body)
    return JsonResponse(result.body, status=result.status, headers=result.headers)
