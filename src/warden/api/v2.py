"""The Open Inference Protocol v2 (KServe, Triton, MLServer) over the caller's own models.

A detection model offers two ways in. Input ``image`` (BYTES, one encoded file per
batch element; base64 text in JSON, raw bytes in binary) answers ``num_detections``
INT32 [B], ``boxes`` FP32 [B, K, 4], ``scores`` FP32 [B, K] and ``class_ids`` INT32
[B, K], padded to the largest count K. An input named like the ONNX model's own
(e.g. ``images`` FP32 [1, 3, 640, 640]) gets the model's raw output, as Triton answers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from warden import __version__
from warden.api.answers import AnswerBudget
from warden.api.audit import facts
from warden.api.auth import Admitted, Caller
from warden.api.body import read_body, request_deadline, shown, unless_disconnected
from warden.api.guard import infer_cap
from warden.api.oip import (
    HEADER_LENGTH,
    InferRequest,
    InferResponse,
    Tensor,
    check_requested_outputs,
    encode_response,
    parse_request,
)
from warden.api.resolve import resolve_model
from warden.api.schemas import inline_schema
from warden.detection import Detections
from warden.detection.model import MAX_DETECTIONS
from warden.errors import InvalidArgument, ModelNotFound, TooManyImages
from warden.registry import ResolvedModel, parse_version
from warden.services import Services
from warden.serving import DetectionEngine, StageTimes
from warden.settings import Settings
from warden.tenancy import Principal

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

IMAGE_INPUT: Final = "image"
DETECTION_OUTPUTS: Final = ["num_detections", "boxes", "scores", "class_ids"]
EXTENSIONS: Final = ["binary_tensor_data"]
_ERROR_BODY: Final = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_ERROR_DESCRIPTIONS: Final = {
    400: "Invalid inference request or image",
    401: "Missing or invalid credential",
    403: "Credential not allowed here",
    404: "No such model or version among the caller's",
    413: "Body too large, or more images than one request may carry (too_many_images)",
    422: "The answer would be larger than the server's limit (answer_too_large)",
    429: "Over the tenant's rate or daily quota (see Retry-After)",
    503: "The tenant's queue is full (see Retry-After)",
    504: "The request's deadline passed while it waited",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` table of an operation that answers these error statuses (``{"error": message}``)."""
    return {
        status: {"description": _ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": _ERROR_BODY}}}
        for status in statuses
    }


_LOOKUP_ERRORS: Final = _errors(401, 403, 404)
_INFER_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The outputs: JSON, or with binary outputs the JSON header then the tensors' bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            HEADER_LENGTH: {
                "description": "Length of the JSON header (only with binary outputs)",
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    },
    **_errors(400, 401, 403, 404, 413, 422, 429, 503, 504),
}


_INFER_BODY: Final[dict[str, Any]] = {
    "parameters": [
        {
            "name": HEADER_LENGTH,
            "in": "header",
            "required": False,
            "description": "With binary tensor data: the length of the JSON header that starts the body",
            "schema": {"type": "integer", "minimum": 0},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(InferRequest.model_json_schema())},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"JSON header of {HEADER_LENGTH} bytes, then binary tensor data",
            },
        },
    },
}


@router.get("/health/live", summary="Liveness")
async def live() -> dict[str, bool]:
    """The server process answers."""
    return {"live": True}


@router.get("/health/ready", summary="Readiness")
async def ready(request: Request) -> dict[str, bool]:
    """The server can reach its database."""
    services: Services = request.app.state.services
    await run_in_threadpool(services.tenants.list_tenants)
    return {"ready": True}


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    """Name, version and the protocol extensions supported."""
    return {"name": "warden", "version": __version__, "extensions": EXTENSIONS}


async def _resolve(request: Request, caller: Caller, name: str, version: str | None) -> ResolvedModel:
    number = None
    if version is not None:
        number = parse_version(version)
        if number is None:
            raise ModelNotFound(f"model {name!r} has no version {version!r}")
    return await resolve_model(request, caller.tenant(), name, number)


def _metadata(resolved: ResolvedModel) -> dict[str, Any]:
    info = resolved.info
    batch = -1 if info["batch"] is None else info["batch"]
    height, width = (-1, -1) if info["dynamic_hw"] else info["input_hw"]
    raw_type = "FP16" if info["input_dtype"] == "float16" else "FP32"
    return {
        "name": resolved.name,
        "versions": [str(resolved.version)],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": info["input_name"], "datatype": raw_type, "shape": [batch, 3, height, width]},
        ],
        "outputs": [
            {"name": "num_detections", "datatype": "INT32", "shape": [-1]},
            {"name": "boxes", "datatype": "FP32", "shape": [-1, -1, 4]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "class_ids", "datatype": "INT32", "shape": [-1, -1]},
            {"name": info["output_name"], "datatype": "FP32", "shape": [batch, -1, -1]},
        ],
        "parameters": {"class_names": info["names"], "layout": info["layout"]},
    }


@router.get("/models/{name}", summary="Model metadata", responses=_LOOKUP_ERRORS)
async def model_metadata(name: str, request: Request, caller: Caller, response: Response) -> dict[str, Any]:
    """Inputs and outputs of the version that serves ``name``."""
    resolved = await _resolve(request, caller, name, None)
    response.headers["X-Model-Version"] = str(resolved.version)
    return _metadata(resolved)


@router.get("/models/{name}/versions/{version}", summary="Model version metadata", responses=_LOOKUP_ERRORS)
async def version_metadata(
    name: str, version: str, request: Request, caller: Caller, response: Response
) -> dict[str, Any]:
    """Inputs and outputs of one version."""
    resolved = await _resolve(request, caller, name, version)
    response.headers["X-Model-Version"] = str(resolved.version)
    return _metadata(resolved)


@router.get("/models/{name}/ready", summary="Model readiness", responses=_LOOKUP_ERRORS)
async def model_ready(name: str, request: Request, caller: Caller, response: Response) -> dict[str, Any]:
    """Ready when the model resolves and its session loads."""
    resolved = await _resolve(request, caller, name, None)
    return await _ready(request, caller, resolved, response)


@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness", responses=_LOOKUP_ERRORS)
async def version_ready(
    name: str, version: str, request: Request, caller: Caller, response: Response
) -> dict[str, Any]:
    """Ready when the version resolves and its session loads."""
    resolved = await _resolve(request, caller, name, version)
    return await _ready(request, caller, resolved, response)


async def _ready(request: Request, caller: Principal, resolved: ResolvedModel, response: Response) -> dict[str, Any]:
    engine: DetectionEngine = request.app.state.engine
    await engine.warm(caller, resolved)
    response.headers["X-Model-Version"] = str(resolved.version)
    return {"name": resolved.name, "version": str(resolved.version), "ready": True}


@router.post(
    "/models/{name}/infer",
    summary="Inference",
    response_model=InferResponse,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_BODY,
)
async def infer(name: str, request: Request, caller: Admitted) -> Response:
    """Run the model that serves ``name``."""
    return await _infer(request, caller, await _resolve(request, caller, name, None))


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on one version",
    response_model=InferResponse,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_BODY,
)
async def infer_version(name: str, version: str, request: Request, caller: Admitted) -> Response:
    """Run one version of ``name``."""
    return await _infer(request, caller, await _resolve(request, caller, name, version))


async def _infer(request: Request, caller: Principal, resolved: ResolvedModel) -> Response:
    engine: DetectionEngine = request.app.state.engine
    settings: Settings = request.app.state.services.settings
    most = settings.max_images_per_request
    body = await read_body(request, infer_cap(most, engine.image_limits(caller).max_bytes))
    parsed, tensors = await run_in_threadpool(parse_request, body, request.headers.get(HEADER_LENGTH))
    del body  # the tensors hold what is needed of it
    parameters = parsed.parameters or {}
    deadline = request_deadline(request, parameters.get("timeout_ms"))
    info = resolved.info
    budget = AnswerBudget(settings.max_answer_bytes)
    if IMAGE_INPUT in tensors:
        check_requested_outputs(parsed, DETECTION_OUTPUTS)
        conf, iou, max_det = _thresholds(parameters)
        images = _image_bytes(tensors.pop(IMAGE_INPUT), most)
        engine.admit(caller, images=len(images))
        noted = facts(request)
        noted.image_bytes, noted.times = sum(len(image) for image in images), StageTimes()
        work = engine.detect(
            caller, resolved, images, conf=conf, iou=iou, max_det=max_det, deadline=deadline, times=noted.times
        )
        found = await unless_disconnected(request, work, noted.times)
        noted.found(found)
        outputs = _detection_tensors(found)
    elif info["input_name"] in tensors:
        check_requested_outputs(parsed, [info["output_name"]])
        tensor = tensors.pop(info["input_name"]).array
        if tensor.ndim > 0:
            engine.admit(caller, images=max(1, int(tensor.shape[0])))
        noted = facts(request)
        noted.times = StageTimes()
        raw = await unless_disconnected(
            request, engine.infer_raw(caller, resolved, tensor, deadline, times=noted.times), noted.times
        )
        outputs = [Tensor(info["output_name"], "FP32", raw)]
    else:
        given = ", ".join(tensors)
        raise InvalidArgument(f"unknown input(s) {given}; send {IMAGE_INPUT!r} (BYTES) or {info['input_name']!r}")
    content, media_type, header_length = encode_response(parsed, resolved.name, str(resolved.version), outputs, budget)
    headers = {"X-Model-Version": str(resolved.version)}
    if header_length is not None:
        headers[HEADER_LENGTH] = str(header_length)
    return Response(content, media_type=media_type, headers=headers)


def _thresholds(parameters: dict[str, Any]) -> tuple[float, float, int]:
    conf, iou, max_det = parameters.get("conf", 0.25), parameters.get("iou", 0.7), parameters.get("max_det", 300)
    for key, value in (("conf", conf), ("iou", iou)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidArgument(f"parameter {key} must be a number between 0 and 1, got {shown(value)}")
    if isinstance(max_det, bool) or not isinstance(max_det, int) or not 1 <= max_det <= MAX_DETECTIONS:
        raise InvalidArgument(
            f"parameter max_det must be an integer between 1 and {MAX_DETECTIONS}, got {shown(max_det)}"
        )
    return float(conf), float(iou), max_det


def _image_bytes(tensor: Tensor, most: int) -> list[bytes]:
    if tensor.datatype != "BYTES" or tensor.array.ndim != 1 or tensor.array.size == 0:
        raise InvalidArgument(f"input {IMAGE_INPUT!r} must be BYTES of shape [B] with B >= 1")
    if tensor.array.size > most:
        raise TooManyImages(
            f"input {IMAGE_INPUT!r} holds {tensor.array.size} images; one request may carry at most {most}"
        )
    images = []
    for element in tensor.array.tolist():
        if isinstance(element, bytes):
            images.append(element)
            continue
        try:
            images.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"input {IMAGE_INPUT!r}: JSON elements must be base64 text of image files") from None
    return images


def _detection_tensors(found: list[Detections]) -> list[Tensor]:
    batch = len(found)
    width = max((len(d) for d in found), default=0)
    counts = np.asarray([len(d) for d in found], dtype=np.int32)
    boxes: npt.NDArray[np.float32] = np.zeros((batch, width, 4), dtype=np.float32)
    scores: npt.NDArray[np.float32] = np.zeros((batch, width), dtype=np.float32)
    class_ids: npt.NDArray[np.int32] = np.zeros((batch, width), dtype=np.int32)
    for index, detections in enumerate(found):
        n = len(detections)
        boxes[index, :n] = detections.boxes
        scores[index, :n] = detections.scores
        class_ids[index, :n] = detections.class_ids
    return [
        Tensor("num_detections", "INT32", counts),
        Tensor("boxes", "FP32", boxes),
        Tensor("scores", "FP32", scores),
        Tensor("class_ids", "INT32", class_ids),
    ]
