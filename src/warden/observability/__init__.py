"""Observability: Prometheus metrics (a registry per app), structured logs, the per-request observer.

- :class:`Metrics` (``metrics.py``): the series, their bounded labels, the scrape;
- :func:`configure_logging` and the access line (``logs.py``): JSON or console, secrets masked;
- :class:`ObservabilityMiddleware` (``middleware.py``): plain ASGI, records each finished request.

Nothing here imports a web framework; ``warden.api`` mounts ``GET /metrics`` and the middleware.
"""

from warden.observability.logs import configure_logging
from warden.observability.metrics import Metrics
from warden.observability.middleware import ObservabilityMiddleware
from warden.observability.request import FinishedRequest

__all__ = ["FinishedRequest", "Metrics", "ObservabilityMiddleware", "configure_logging"]
