"""The simple detect API: ``POST /v1/models/{name}/detect`` and ``GET /v1/models``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from warden.api.answers import AnswerBudget, detect_answer
from warden.api.audit import facts
from warden.api.auth import Admitted, Caller
from warden.api.body import read_image, request_deadline, unless_disconnected
from warden.api.resolve import resolve_model
from warden.api.schemas import AliasOut, DetectResponse, ModelOut, ModelsResponse, error_responses
from warden.detection.model import MAX_DETECTIONS
from warden.services import Services
from warden.serving import DetectionEngine, StageTimes

router = APIRouter(prefix="/v1", tags=["detect"])

_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
        },
    }
}


@router.post(
    "/models/{name}/detect",
    response_model=DetectResponse,
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429, 503, 504),
    openapi_extra=_IMAGE_BODY,
    summary="Detect objects in one image",
)
async def detect(
    name: str,
    request: Request,
    caller: Admitted,
    conf: Annotated[float, Query(ge=0.0, le=1.0, description="Keep detections scoring above this.")] = 0.25,
    iou: Annotated[float, Query(ge=0.0, le=1.0, description="NMS IoU threshold, per class.")] = 0.7,
    max_det: Annotated[int, Query(ge=1, le=MAX_DETECTIONS, description="At most this many detections.")] = 300,
    timeout_ms: Annotated[
        int | None, Query(ge=1, description="Give up (504) if not done in this time; also X-Request-Timeout-Ms.")
    ] = None,
) -> Response:
    """Run the caller's model ``name`` on the image in the body; the image is never stored.

    The answer is a ``DetectResponse``, written one detection at a time within ``WARDEN_MAX_ANSWER_BYTES``.
    """
    engine: DetectionEngine = request.app.state.engine
    resolved = await resolve_model(request, caller.tenant(), name)
    data = await read_image(request, engine.image_limits(caller).max_bytes)
    noted = facts(request)
    noted.image_bytes, noted.times = len(data), StageTimes()
    deadline = request_deadline(request, timeout_ms)
    work = engine.detect(
        caller, resolved, [data], conf=conf, iou=iou, max_det=max_det, deadline=deadline, times=noted.times
    )
    (found,) = await unless_disconnected(request, work, noted.times)
    noted.found([found])
    times = noted.times
    headers = {"Server-Timing": times.server_timing(), "X-Model-Version": str(resolved.version)}
    budget = AnswerBudget(request.app.state.services.settings.max_answer_bytes)
    answer = detect_answer(resolved.name, resolved.version, found, budget)
    return Response(answer, media_type="application/json", headers=headers)


@router.get(
    "/models", response_model=ModelsResponse, responses=error_responses(401, 403), summary="List the caller's models"
)
async def list_models(request: Request, caller: Caller) -> ModelsResponse:
    """The caller's own models with their versions and aliases."""
    services: Services = request.app.state.services
    models = await run_in_threadpool(services.registry.list_models, caller.tenant())
    return ModelsResponse(
        models=[
            ModelOut(
                name=m.name,
                versions=[v.version for v in m.versions],
                aliases={k: AliasOut(version=a.version, weight=a.weight) for k, a in m.aliases.items()},
            )
            for m in models
        ]
    )
