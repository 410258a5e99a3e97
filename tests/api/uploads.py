"""A raw-socket client that streams a huge request body lazily and notices the answer while still sending.

The body is one reused chunk sent again and again (never the whole body in memory), framed as
HTTP/1.1 chunked transfer coding or under a declared ``Content-Length``. Before each chunk the
client looks whether the server has answered already; it stops sending when it has, or when the
server closes the connection. Shared by the body-limit tests and ``bench/bodies.py``.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from typing import Final

CHUNK: Final = 1024 * 1024


@dataclass(frozen=True)
class Upload:
    """How one upload ended: the answer's status (``None`` if none came), bytes sent, time to the answer."""

    status: int | None
    sent: int
    total: int
    seconds: float
    answer: bytes

    @property
    def refused_early(self) -> bool:
        """The server answered or closed before the client had sent its whole body."""
        return self.sent < self.total


def upload(
    port: int,
    path: str,
    headers: dict[str, str],
    total: int,
    *,
    chunked: bool = True,
    chunk: int = CHUNK,
    timeout: float = 60,
) -> Upload:
    """POST ``total`` bytes of zeros to ``127.0.0.1:port`` ``path``, stopping as soon as the server answers."""
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)}
    head = "".join(f"{name}: {value}\r\n" for name, value in {**headers, **framing}.items())
    payload = bytes(chunk)
    frame = f"{chunk:x}\r\n".encode() + payload + b"\r\n" if chunked else payload
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}\r\n".encode())
        started = time.perf_counter()
        answered = b""
        try:
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(frame)
                sent += chunk
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed while the client still had bytes to send
        answered = _read_answer(sock)
        seconds = time.perf_counter() - started
    return Upload(status=_status(answered), sent=sent, total=total, seconds=seconds, answer=answered)


def _read_answer(sock: socket.socket) -> bytes:
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
    except (ConnectionResetError, TimeoutError):
        pass
    return received


def _status(answer: bytes) -> int | None:
    parts = answer.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])
