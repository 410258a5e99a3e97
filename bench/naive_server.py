"""The brief's reference design, as a baseline: FastAPI, a dict of tenant tokens, the token in the body,
a per-tenant model loaded lazily, inference inside the request handler, an audit line printed.

It uses Warden's own detection library so that both servers do the same model work; only the serving
design differs. Run: ``python bench/naive_server.py PORT MODEL_PATH TOKEN=TENANT...``.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Form, HTTPException, UploadFile

from warden.detection import DetectionModel

app = FastAPI()
TOKENS: dict[str, str] = {}
MODEL_PATH = ""
MODELS: dict[str, DetectionModel] = {}


@app.post("/detect")
async def detect(token: str = Form(...), image: UploadFile | None = None) -> dict[str, object]:
    tenant = TOKENS.get(token)
    if tenant is None or image is None:
        raise HTTPException(401, "bad token")
    if tenant not in MODELS:
        MODELS[tenant] = DetectionModel.load(MODEL_PATH, threads=2)
    found = MODELS[tenant].detect(await image.read())  # blocks the event loop, as the brief's handler does
    print(f"audit tenant={tenant} detections={len(found)}", flush=True)
    return {"detections": found.to_dicts()}


if __name__ == "__main__":
    port, MODEL_PATH = int(sys.argv[1]), sys.argv[2]
    TOKENS.update(dict(arg.split("=", 1) for arg in sys.argv[3:]))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
