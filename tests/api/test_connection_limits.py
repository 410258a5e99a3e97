"""The server's edge against slow and greedy clients: real sockets against a real ``warden serve``.

Limits are configured short (a 1 s head clock, a 1 s body grace at 1000 bytes/s) so each cut
happens quickly; tests assert that the cut happened (the answer, then the socket closed)
within a generous bound, never how long it took.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.conftest import tiny_graph
from tests.audit.test_server_crash import wait_ready
from tests.cli.test_serve import WARDEN, free_port, interrupt
from warden.services import open_services
from warden.settings import Settings
from warden.tenancy import Scope

CUT_WITHIN = 20.0
"""Generous bound for a cut configured at 1-2 s (the machine is small and shared)."""
SHORT_LIMITS = {
    "WARDEN_HTTP_HEADER_TIMEOUT_SECONDS": "1",
    "WARDEN_HTTP_BODY_GRACE_SECONDS": "1",
    "WARDEN_HTTP_BODY_MIN_RATE": "1000",
    "WARDEN_HTTP_MAX_HEADER_BYTES": str(64 * 1024),
    "WARDEN_HTTP_MAX_HEADERS": "100",
}


@dataclass(frozen=True)
class Server:
    """A running ``warden serve``: its port and a detect key for the tenant's ``tiny`` model."""

    port: int
    key: str

    def connect(self) -> socket.socket:
        """A new TCP connection to the server."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=CUT_WITHIN)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


@contextmanager
def serving(data_dir: Path, limits: dict[str, str]) -> Iterator[Server]:
    """``warden serve`` on ``data_dir`` (a tenant with the tiny model and a detect key) under ``limits``."""
    services = open_services(Settings(data_dir=data_dir))
    try:
        services.tenants.create_tenant("acme")
        services.registry.push(services.tenants.tenant_id("acme"), "tiny", tiny_graph())
        key = services.tenants.create_key("acme", Scope.DETECT).key
    finally:
        services.close()
    port = free_port()
    env = {**os.environ, "WARDEN_DATA_DIR": str(data_dir), "WARDEN_WORKERS": "1", **limits}
    process = subprocess.Popen(
        [str(WARDEN), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield Server(port, key)
    finally:
        interrupt(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with short limits for the whole module."""
    with serving(tmp_path_factory.mktemp("edge") / "data", SHORT_LIMITS) as running:
        yield running


def read_until_closed(sock: socket.socket, within: float = CUT_WITHIN) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open after ``within`` s."""
    sock.settimeout(within)
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {within} s; got {bytes(received)!r}") from None
    return bytes(received)


def status_and_body(answer: bytes) -> tuple[int, bytes, dict[str, str]]:
    """The status, the body and the (lower-cased) headers of one HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), body, headers


def read_response(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length, read from a connection that stays open."""
    received = bytearray()
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {bytes(received)!r}"
        received += chunk
    length = int(status_and_body(bytes(received))[2]["content-length"])
    while len(received.partition(b"\r\n\r\n")[2]) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole body: {bytes(received)!r}"
        received += chunk
    return bytes(received)


def refusal(answer: bytes, status: int, code: str) -> None:
    """``answer`` is a JSON error refusal with ``status`` and the stable ``code`` that closes the connection."""
    got, body, headers = status_and_body(answer)
    assert got == status, answer[:300]
    assert headers["x-error-code"] == code
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == code


def drip(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time, ``every`` seconds apart, until done, stopped or cut."""
    for byte in data:
        if stop.wait(every):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def get(path: str = "/v2/health/live", extra: bytes = b"") -> bytes:
    """A complete keep-alive GET."""
    return f"GET {path} HTTP/1.1\r\nHost: warden\r\n".encode() + extra + b"\r\n"


def test_slowloris_heads_are_cut_with_408(server: Server) -> None:
    socks = [server.connect() for _ in range(10)]
    stop = threading.Event()
    drippers = [
        threading.Thread(
            target=drip, args=(sock, b"GET /v1/models HTTP/1.1\r\nHost: w\r\nX-A: " + b"a" * 500, 0.1, stop)
        )
        for sock in socks
    ]
    try:
        for dripper in drippers:
            dripper.start()
        answers = [read_until_closed(sock) for sock in socks]
    finally:
        stop.set()
        for dripper in drippers:
            dripper.join()
        for sock in socks:
            sock.close()
    for answer in answers:
        refusal(answer, 408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    with server.connect() as sock:
        assert read_until_closed(sock) == b""


@pytest.mark.parametrize("authorised", [True, False], ids=["authorised", "unauthenticated"])
def test_a_slow_body_is_cut(server: Server, authorised: bool) -> None:
    auth = f"Authorization: Bearer {server.key}\r\n".encode() if authorised else b""
    head = b"POST /v1/models/tiny/detect HTTP/1.1\r\nHost: w\r\nContent-Type: image/jpeg\r\n" + auth
    stop = threading.Event()
    with server.connect() as sock:
        sock.sendall(head + b"Content-Length: 100000\r\n\r\n")
        dripper = threading.Thread(target=drip, args=(sock, b"\xff" * 100_000, 0.05, stop))
        dripper.start()
        try:
            answer = read_until_closed(sock)
        finally:
            stop.set()
            dripper.join()
    if authorised:  # the application waits for the body: the edge answers for it
        refusal(answer, 408, "request_timeout")
    else:  # refused before its body was read; the trickle that follows is cut all the same
        assert status_and_body(answer)[0] == 401


def test_a_body_at_the_minimum_rate_is_served(server: Server) -> None:
    body = b"\x00" * 3000  # 2000 bytes/s for 1.5 s: past the grace, above the rate
    head = (
        f"POST /v1/models/tiny/detect HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {server.key}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with server.connect() as sock:
        sock.sendall(head)
        for offset in range(0, len(body), 200):
            sock.sendall(body[offset : offset + 200])
            time.sleep(0.1)
        answer = read_until_closed(sock)
    status, payload, _ = status_and_body(answer)
    assert status == 400, answer[:300]  # not an image: the application read the whole body and answered
    assert json.loads(payload)["error"]["code"] == "invalid_image"


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread (the server answers before it has read it all); errors end the thread."""

    def send() -> None:
        with suppress(OSError):
            sock.sendall(data)

    sender = threading.Thread(target=send)
    sender.start()
    return sender


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: w\r\nX-Big: " + b"a" * (32 * 1024 * 1024) + b"\r\n\r\n", id="32 MiB header"
        ),
        pytest.param(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 100_000 + b"\r\n", id="100000 headers"),
        pytest.param(get("/v1/models", b"X-Big: " + b"a" * (65 * 1024) + b"\r\n"), id="65 KiB header at once"),
        pytest.param(get("/v1/models", b"X-A: b\r\n" * 100), id="101 headers"),
        pytest.param(b"GET /" + b"a" * (65 * 1024) + b" HTTP/1.1\r\nHost: w\r\n\r\n", id="65 KiB target"),
    ],
)
def test_oversized_heads_answer_431(server: Server, head: bytes) -> None:
    with server.connect() as sock:
        sender = send_in_background(sock, head)
        answer = read_until_closed(sock)
        sender.join()
    refusal(answer, 431, "headers_too_large")


def test_an_oversized_head_on_the_open_inference_protocol_answers_in_its_shape(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(get("/v2/health/ready", extra=b"X-A: b\r\n" * 100))
        answer = read_until_closed(sock)
    status, body, headers = status_and_body(answer)
    assert (status, headers["x-error-code"]) == (431, "headers_too_large")
    assert json.loads(body) == {"error": "more than 100 request headers"}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(b"X-Big: " + b"a" * (60 * 1024) + b"\r\n", id="60 KiB header"),
        pytest.param(b"X-A: b\r\n" * 98, id="100 headers"),
    ],
)
def test_heads_within_the_limits_are_served_and_keep_alive_holds(server: Server, extra: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(get(extra=extra))
        first = read_response(sock)
        time.sleep(2)  # idle past the 1 s head clock, within the 5 s keep-alive
        sock.sendall(get())
        second = read_response(sock)
    assert status_and_body(first)[0] == 200, first[:300]
    assert status_and_body(second)[0] == 200, second[:300]


def test_connections_per_client_address_are_capped(tmp_path: Path) -> None:
    limits = {"WARDEN_HTTP_MAX_CONNECTIONS_PER_CLIENT": "4", "WARDEN_HTTP_HEADER_TIMEOUT_SECONDS": "120"}
    with serving(tmp_path / "data", limits) as server:
        held = [server.connect() for _ in range(4)]
        try:
            for sock in held:  # half a request each: held open by a 120 s head clock
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
            with server.connect() as beyond:
                assert read_until_closed(beyond) == b""  # closed at once, long before any clock
            held.pop().close()
            deadline = time.monotonic() + CUT_WITHIN
            while not (answer := request_once(server)):  # once the server has seen that close
                assert time.monotonic() < deadline, "the freed place was never given to a new connection"
                time.sleep(0.1)
            assert status_and_body(answer)[0] == 200
            for sock in held:  # the held connections were served all along
                sock.sendall(b"Host: w\r\n\r\n")
                assert status_and_body(read_response(sock))[0] == 200
        finally:
            for sock in held:
                sock.close()


def request_once(server: Server) -> bytes:
    """One GET on a new connection: the answer, or nothing when the connection is closed first."""
    with server.connect() as sock:
        try:
            sock.sendall(get())
            return sock.recv(65536)
        except ConnectionResetError:
            return b""
