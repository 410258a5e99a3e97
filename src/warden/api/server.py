"""The HTTP server's edge: limits on what one connection may hold, and a shutdown that always runs to the end.

``warden serve`` runs uvicorn with the httptools parser (what uvicorn picks when httptools is
installed, kept for its speed), subclassed here, because neither parser bounds a client by itself:

- **request head**: at most ``WARDEN_HTTP_MAX_HEADER_BYTES`` bytes (request line and headers)
  and ``WARDEN_HTTP_MAX_HEADERS`` headers, else ``431 headers_too_large``; the bytes of a head
  still incomplete are counted as they arrive, so a 32 MiB header is refused after 64 KiB, not
  buffered;
- **slow head** (slowloris): a head must be complete within ``WARDEN_HTTP_HEADER_TIMEOUT_SECONDS``
  of its first byte, or of the connection's start, else ``408 request_timeout`` (a connection
  that sent nothing is closed without an answer, as an idle keep-alive connection is);
- **slow body**: after ``WARDEN_HTTP_BODY_GRACE_SECONDS`` a body must have averaged
  ``WARDEN_HTTP_BODY_MIN_RATE`` bytes/s (each byte extends the deadline by ``1/RATE`` s; time
  the server itself is not reading, under flow control or before ``100 Continue``, does not
  count), else ``408 request_timeout``;
- **connections per client address**: at most ``WARDEN_HTTP_MAX_CONNECTIONS_PER_CLIENT`` open
  at once; a further one is closed at once. Trusted proxies are not counted.

A refusal is a JSON error body in the shape of the API addressed, with ``X-Error-Code`` and
``Connection: close``; the server then stops writing and discards what the client still
sends for up to two seconds before it closes (a lingering close), so the answer reaches a
client that is still sending instead of being lost to a TCP reset.

:class:`WardenServer` keeps uvicorn's orderly shutdown on SIGTERM and SIGINT (stop accepting,
let in-flight requests finish for ``WARDEN_SHUTDOWN_DRAIN_SECONDS``, run the app's shutdown)
but does not raise the signal again afterwards, so ``run`` returns and the caller can flush and
seal the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from warden.api.errors import status_for
from warden.errors import HeadersTooLarge, RequestTimeout, WardenError
from warden.settings import Settings

LINGER_SECONDS: Final = 2.0
"""How long a refused connection's further input is read and discarded before the connection is closed."""
_BODY_TICK: Final = 0.5
_HEADER_OVERHEAD: Final = 4  # ": " and CRLF around each header, as it came on the wire

_log = logging.getLogger("warden.http")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What one client may hold: head size and header count, head and body pace, open connections."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_grace: float = 10.0
    body_min_rate: float = 1024.0
    max_connections_per_client: int = 64
    trusted: tuple[Network, ...] = ()
    trust_every_address: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        """The limits the ``WARDEN_HTTP_*`` settings give; ``WARDEN_TRUSTED_PROXIES`` are exempt from the cap."""
        networks = []
        for entry in settings.trusted_proxies:
            with contextlib.suppress(ValueError):  # not an address: uvicorn treats it as a literal host name
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            header_timeout=settings.http_header_timeout_seconds,
            body_grace=settings.http_body_grace_seconds,
            body_min_rate=float(settings.http_body_min_rate),
            max_connections_per_client=settings.http_max_connections_per_client,
            trusted=tuple(networks),
            trust_every_address="*" in (entry.strip() for entry in settings.trusted_proxies),
        )

    def counted(self, host: str) -> bool:
        """Whether connections from ``host`` count towards the per-address cap (trusted proxies do not)."""
        if self.trust_every_address:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return True
        return not any(address in network for network in self.trusted)


class ClientConnections:
    """Open connections per client address, shared by every connection of one server (one event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._warned: set[str] = set()

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host``; False (not counted) when the address is at its cap."""
        current = self._open.get(host, 0)
        if current >= self.limit:
            if host not in self._warned:  # once per episode, so a flood does not flood the log
                self._warned.add(host)
                _log.warning("a client address holds %d connections, the cap; closing its new ones", current)
            return False
        self._open[host] = current + 1
        return True

    def release(self, host: str) -> None:
        """Forget one connection of ``host``."""
        remaining = self._open.get(host, 0) - 1
        if remaining > 0:
            self._open[host] = remaining
        else:
            self._open.pop(host, None)
        if remaining < self.limit:
            self._warned.discard(host)

    def open(self, host: str) -> int:
        """How many connections from ``host`` are counted now."""
        return self._open.get(host, 0)


class EdgeConfig(uvicorn.Config):
    """uvicorn's configuration with Warden's guarded protocol, its limits, and the per-address counts."""

    def __init__(self, app: Any, *, limits: EdgeLimits, **options: Any) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, ws="none", **options)
        self.limits = limits
        self.clients = ClientConnections(limits.max_connections_per_client)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that is being refused."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`EdgeLimits` enforced on every connection."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, EdgeConfig):
            raise TypeError("GuardedHttpToolsProtocol needs an EdgeConfig")
        self._limits = config.limits
        self._clients = config.clients
        self._counted: str | None = None
        self._in_head = True
        self._in_body = False
        self._head_pending = 0
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = self._body_tick = self._body_waited = 0.0
        self._body_bytes = 0
        self._refusal: WardenError | None = None
        self._lingering = False
        self.url = b""

    # --- connection ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection against its address's cap (closing it at once beyond), and start the head clock."""
        super().connection_made(transport)
        host = None if self.client is None else self.client[0]
        if host is not None and self._limits.counted(host):
            if not self._clients.admit(host):
                self._lingering = True
                transport.close()
                return
            self._counted = host
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop this connection's clocks and release its place under the address's cap."""
        self._cancel_clocks()
        if self._counted is not None:
            self._clients.release(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting the bytes of a head still incomplete; refuse what breaks a limit."""
        if self._lingering:
            return  # a refused connection: its further input is discarded
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_pending += len(data)
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_too_slow)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            _log.debug("an Upgrade request was served as plain HTTP (Warden serves no WebSockets)")
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(self._refusal)
                return
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
            return
        if self._in_head and self._head_pending > self._limits.max_header_bytes:
            self._refuse(HeadersTooLarge(f"request head over {self._limits.max_header_bytes} bytes"))
        elif self._in_body and self._body_timer is None:
            now = self.loop.time()
            self._body_tick = now
            self._body_timer = self.loop.call_later(_BODY_TICK, self._check_body)

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        """A new request: its head counts from zero, and its clock runs (a pipelined head starts it here)."""
        super().on_message_begin()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_too_slow)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        """Count the request target against the head's byte limit."""
        self._head_bytes += len(url)
        self._check_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count a header against the head's byte and header-count limits."""
        self._head_bytes += len(name) + len(value) + _HEADER_OVERHEAD
        self._header_count += 1
        self._check_head()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is complete: stop its clock; the body's pace is watched until the request ends."""
        self._in_head = False
        self._head_pending = 0
        self._cancel_head_clock()
        self._in_body = True
        self._body_started = self.loop.time()
        self._body_waited = 0.0
        self._body_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Count the body's bytes for its pace."""
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is complete: stop the body's clock; what comes next is a new head."""
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_head = True
        self._head_pending = 0
        super().on_message_complete()

    # --- limits ---

    def _check_head(self) -> None:
        if self._header_count > self._limits.max_headers:
            self._refusal = HeadersTooLarge(f"more than {self._limits.max_headers} request headers")
        elif self._head_bytes > self._limits.max_header_bytes:
            self._refusal = HeadersTooLarge(f"request head over {self._limits.max_header_bytes} bytes")
        else:
            return
        raise _Refused

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._head_pending == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # nothing of a request arrived: closed as an idle keep-alive connection is
            return
        self._refuse(RequestTimeout(f"request head not received within {self._limits.header_timeout:g} s"))

    def _check_body(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._body_waited += now - self._body_tick  # the server is not reading: not the client's time
        self._body_tick = now
        spent = now - self._body_started - self._body_waited
        allowed = self._limits.body_grace + self._body_bytes / self._limits.body_min_rate
        if spent > allowed:
            rate = f"{self._limits.body_min_rate:g} bytes/s after {self._limits.body_grace:g} s"
            self._refuse(RequestTimeout(f"request body arrived slower than {rate} ({self._body_bytes} bytes)"))
            return
        self._body_timer = self.loop.call_later(_BODY_TICK, self._check_body)

    def _refuse(self, error: WardenError) -> None:
        """Answer ``error`` and linger, or only close when this connection is answering something else."""
        cycle = self.cycle
        if self._in_body:
            answerable = cycle is not None and not cycle.response_started
        else:
            answerable = cycle is None or cycle.response_complete
        self._cancel_clocks()
        self._lingering = True
        self._in_head = self._in_body = False
        if not answerable:
            self.transport.close()
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's own answer, if it makes one, goes nowhere
            cycle.message_event.set()
        _log.info("request refused at the connection: %s: %s", error.code, error.message)
        self.transport.write(self._error_bytes(error))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _error_bytes(self, error: WardenError) -> bytes:
        status = status_for(error)
        document: object = {"error": {"code": error.code, "message": error.message}}
        if self.url.startswith(b"/v2"):  # the Open Inference Protocol's error shape
            document = {"error": error.message}
        body = json.dumps(document).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-error-code: " + error.code.encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        return b"".join(head) + body

    def _cancel_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_clocks(self) -> None:
        self._cancel_head_clock()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None


class WardenServer(uvicorn.Server):
    """uvicorn's server, except that the shutdown signal is not raised again once the shutdown is done.

    uvicorn catches SIGTERM and SIGINT, shuts down in order, then restores the previous
    handlers and raises the same signal again: SIGINT becomes ``KeyboardInterrupt``, but
    SIGTERM's default action ends the process on the spot, before any ``finally`` of the
    caller, so the audit trail was never flushed nor sealed under Kubernetes. Here ``run``
    returns; ``signals`` says which signals asked for the shutdown.
    """

    signals: tuple[int, ...] = ()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's signal capture, with the captured signals recorded instead of raised again."""
        with super().capture_signals():
            try:
                yield
            finally:
                self.signals = tuple(self._captured_signals)
                self._captured_signals.clear()


def build_server(app: Any, settings: Settings) -> WardenServer:
    """The server ``warden serve`` runs: the guarded protocol, Warden's logging, and the drain timeout."""
    config = EdgeConfig(
        app,
        limits=EdgeLimits.from_settings(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,  # Warden writes its own access line
        server_header=False,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        timeout_graceful_shutdown=settings.shutdown_drain_seconds,
    )
    return WardenServer(config)
