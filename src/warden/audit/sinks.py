"""Where ``warden audit ship`` delivers lines: a syslog receiver over TCP or TLS, or a local file.

A target is a URL (:meth:`Target.parse`):

- ``syslog+tcp://HOST:PORT``: RFC 5424 messages over TCP, octet-counted (RFC 6587 section
  3.4.1: each frame is ``MSG-LEN SP SYSLOG-MSG``, MSG-LEN the decimal octet count of the
  message, no trailer).
- ``syslog+tls://HOST:PORT``: the same frames inside TLS (RFC 5425 section 4.3), the server
  certificate checked against the system trust store or ``--ca-file``, host name verified.
- ``file:///absolute/path``: one line per record, appended; the file is created ``0600``.

Sinks deliver one batch at a time and say whether the receiver has it (:meth:`Sink.deliver`
returns or raises :class:`DeliveryFailed`); nothing here touches the database.

**How a syslog batch counts as delivered.** Syslog over TCP has no acknowledgements, and a
successful ``sendall`` only means the bytes reached the local kernel: a receiver that goes
away later loses them silently. So each batch travels on a connection of its own, which
the shipper closes in an orderly way and waits for the receiver to close in turn:

1. connect (and for TLS, handshake and verify the certificate and host name);
2. send every frame of the batch;
3. end the stream: TLS ``close_notify`` (RFC 5425 section 4.4), then TCP ``FIN``;
4. read until the receiver closes its side (end of stream);
5. check that the receiver's TCP acknowledged every byte and ``FIN`` sent and that no reset
   came (Linux: the socket's unacknowledged-output count is 0 and ``SO_ERROR`` is 0).

A receiving process that closes (or dies) with bytes unread makes its kernel answer with a
reset instead of a ``FIN``, and bytes arriving after it closed are answered with a reset too;
so 4 and 5 together mean the receiver read every byte of the batch from its socket. Anything
else (refused, reset, timeout, certificate problem) raises :class:`DeliveryFailed`, and the
shipper sends the whole batch again. Two things no syslog sender can see: what a receiver
does with bytes it has read, and a receiver that half-closes (``shutdown`` for writing)
before reading everything and then drops the rest. On systems other than Linux, step 5
checks ``SO_ERROR`` only.

**Files** are appended with ``O_APPEND``, then ``fsync``-ed (and the directory, when the file
was created) before ``deliver`` returns. :meth:`FileSink.resume` makes a resumed shipper
exactly-once: lines of a batch that reached the file before a crash, but whose position was
never committed, are found at the file's end and counted as delivered instead of written
again (a torn last line is completed).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit

from warden.errors import DeliveryFailed, InvalidArgument

DEFAULT_TIMEOUT: Final = 30.0
_TCP_CLOSE: Final = 7  # tcpi_state of a socket whose connection is gone (linux/tcp_states.h)
_FIRST_CHECK: Final = 0.0005
_LAST_CHECK: Final = 0.05


class TargetKind(StrEnum):
    """The kinds of shipping target, by URL scheme."""

    SYSLOG_TCP = "syslog+tcp"
    SYSLOG_TLS = "syslog+tls"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed shipping target: a syslog host and port, or a file path."""

    kind: TargetKind
    host: str = ""
    port: int = 0
    path: Path | None = None

    @classmethod
    def parse(cls, url: str) -> Target:
        """``syslog+tcp://HOST:PORT``, ``syslog+tls://HOST:PORT`` or ``file:///absolute/path``.

        Raises ``InvalidArgument`` naming what is wrong (scheme, host, port, path, extra parts).
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise InvalidArgument(f"--to: {url!r} is not a valid URL ({exc})") from None
        allowed = ", ".join(f"{kind.value}://" for kind in TargetKind)
        try:
            kind = TargetKind(parts.scheme.lower())
        except ValueError:
            raise InvalidArgument(f"--to: unknown scheme in {url!r}; use one of {allowed}") from None
        if parts.query or parts.fragment or parts.username is not None or parts.password is not None:
            raise InvalidArgument(f"--to: {url!r} may not have user info, a query or a fragment")
        if kind is TargetKind.FILE:
            if parts.netloc not in ("", "localhost"):
                raise InvalidArgument(f"--to: {url!r} names a host or a relative path; use file:///absolute/path")
            path = Path(unquote(parts.path))
            if not path.is_absolute() or not path.name:
                raise InvalidArgument(f"--to: {url!r} is not an absolute file path (file:///var/log/audit.jsonl)")
            return cls(kind, path=path)
        if not parts.hostname:
            raise InvalidArgument(f"--to: {url!r} has no host; use {kind.value}://HOST:PORT")
        if port is None:
            raise InvalidArgument(f"--to: {url!r} has no port; use {kind.value}://HOST:PORT (1-65535)")
        if not 0 < port < 65536:
            raise InvalidArgument(f"--to: port {port} is out of range 1-65535")
        if parts.path not in ("", "/"):
            raise InvalidArgument(f"--to: {url!r} may not have a path; use {kind.value}://HOST:PORT")
        return cls(kind, host=parts.hostname, port=port)

    @property
    def is_syslog(self) -> bool:
        """Whether the target is a syslog receiver (TCP or TLS)."""
        return self.kind is not TargetKind.FILE

    def __str__(self) -> str:
        if self.path is not None:
            return f"file://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind.value}://{host}:{self.port}"


class Sink(Protocol):
    """Delivers batches of lines to one target; the shipper commits a position only after ``deliver`` returns.

    A sink that can see what already arrived (a file) implements ``resume``; others return 0.
    """

    target: str
    """The target as a URL, for messages."""
    resumable: bool
    """Whether ``resume`` can find anything (otherwise the shipper does not ask)."""

    def resume(self, lines: Sequence[str]) -> int:
        """How many of ``lines`` (from the first) the target already holds, left by an interrupted run."""
        ...

    def deliver(self, lines: Sequence[str]) -> None:
        """Deliver ``lines`` in order; return only once the target has them, else raise ``DeliveryFailed``."""
        ...


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client context that verifies the server certificate (against ``ca_file`` if given) and its host name."""
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"--ca-file: cannot load CA certificates from {ca_file}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def octet_counted(lines: Sequence[str]) -> bytes:
    """RFC 6587 section 3.4.1 / RFC 5425 section 4.3 frames: ``MSG-LEN SP SYSLOG-MSG`` for each line."""
    frames = []
    for line in lines:
        message = line.encode("utf-8")
        frames.append(b"%d %s" % (len(message), message))
    return b"".join(frames)


class SyslogSink:
    """Octet-counted RFC 5424 messages over TCP, or TLS when given a context; a connection per batch."""

    resumable = False

    def __init__(
        self, host: str, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if timeout <= 0:
            raise InvalidArgument(f"timeout must be > 0 seconds, not {timeout}")
        self.host = host
        self.port = port
        self.timeout = timeout
        self._tls = tls
        scheme = TargetKind.SYSLOG_TCP if tls is None else TargetKind.SYSLOG_TLS
        self.target = str(Target(scheme, host=host, port=port))

    def resume(self, lines: Sequence[str]) -> int:
        """A syslog receiver cannot be asked what it has: always 0."""
        return 0

    def deliver(self, lines: Sequence[str]) -> None:
        """Send ``lines`` on a fresh connection and wait until the receiver read them all (module docstring)."""
        if not lines:
            return
        payload = octet_counted(lines)
        deadline = time.monotonic() + self.timeout
        try:
            with self._connect() as connection:
                connection.sendall(payload)
                self._end(connection, deadline)
        except ssl.SSLCertVerificationError as exc:
            refused = exc.verify_message or exc.reason or str(exc)
            raise DeliveryFailed(f"{self.target}: the server certificate was refused: {refused}") from None
        except OSError as exc:  # ssl.SSLError included
            raise DeliveryFailed(f"{self.target}: {_reason(exc)}") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[socket.socket]:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            if self._tls is None:
                yield raw
                return
            wrapped = self._tls.wrap_socket(raw, server_hostname=self.host)
            try:
                yield wrapped
            finally:
                wrapped.close()
        finally:
            raw.close()

    def _end(self, connection: socket.socket, deadline: float) -> None:
        """Close our side, read to the receiver's end of stream, then require every byte acknowledged."""
        if isinstance(connection, ssl.SSLSocket):
            # close_notify; the receiver answers with its own or just closes the TCP connection.
            with contextlib.suppress(ssl.SSLEOFError, ssl.SSLZeroReturnError):
                connection.unwrap()
        connection.shutdown(socket.SHUT_WR)
        while connection.recv(4096):  # a syslog receiver sends nothing; read until it closes
            if time.monotonic() > deadline:
                raise TimeoutError("the receiver kept sending instead of closing")
        _wait_acknowledged(connection, deadline)


def _wait_acknowledged(connection: socket.socket, deadline: float) -> None:
    """Return once the peer acknowledged every byte we sent (and our FIN) with no error on the socket."""
    pause = _FIRST_CHECK
    while True:
        error = connection.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        waiting = _unacknowledged(connection)
        if waiting == 0:
            return
        if _tcp_state(connection) == _TCP_CLOSE:
            raise ConnectionResetError(f"the receiver closed the connection with {waiting} bytes unacknowledged")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the receiver did not acknowledge the last {waiting} bytes")
        time.sleep(pause)
        pause = min(pause * 2, _LAST_CHECK)


def _unacknowledged(connection: socket.socket) -> int:
    """Bytes sent (our FIN counts one) that the peer has not acknowledged: Linux SIOCOUTQ; 0 elsewhere."""
    if sys.platform != "linux":
        return 0
    import fcntl  # noqa: PLC0415 - POSIX only
    import termios  # noqa: PLC0415 - POSIX only

    answer = fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # TIOCOUTQ == SIOCOUTQ on Linux
    return int(struct.unpack("i", answer)[0])


def _tcp_state(connection: socket.socket) -> int | None:
    if sys.platform != "linux":
        return None
    info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return info[0]


def _reason(exc: OSError) -> str:
    """A one-line reason for a foreign error, without the errno noise."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return "timed out" if str(exc) in ("", "timed out") else f"timed out: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class FileSink:
    """Appends lines to a file (created ``0600``) and fsyncs it before reporting them delivered."""

    resumable = True

    def __init__(self, path: Path) -> None:
        if not path.is_absolute():
            raise InvalidArgument(f"the shipping file must be an absolute path, not {path}")
        if not path.parent.is_dir():
            raise InvalidArgument(f"--to: the directory {path.parent} does not exist")
        if path.is_dir():
            raise InvalidArgument(f"--to: {path} is a directory")
        self.path = path
        self.target = str(Target(TargetKind.FILE, path=path))

    def resume(self, lines: Sequence[str]) -> int:
        """How many of ``lines`` (from the first) the file already ends with, left by an interrupted run.

        A torn last line that is the start of the next of ``lines`` is completed (and fsync-ed)
        and counted. Lines carry their stream, seq and chain hash, so a match cannot be an
        older line.
        """
        if not lines:
            return 0
        encoded = [(line + "\n").encode() for line in lines]
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                start = max(0, size - sum(map(len, encoded)) - 1)
                handle.seek(start)
                tail = handle.read()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise DeliveryFailed(f"{self.target}: cannot read it back: {_reason(exc)}") from None
        cut = tail.rfind(b"\n") + 1
        body, fragment = tail[:cut], tail[cut:]
        held = _lines_at_end(body, encoded, at_file_start=start == 0)
        starts_a_line = cut > 0 or start == 0  # not the cut-off end of a longer line
        if fragment and starts_a_line and held < len(encoded) and encoded[held].startswith(fragment):
            self._append(encoded[held][len(fragment) :])  # the crashed run wrote the start of this very line
            held += 1
        return held

    def deliver(self, lines: Sequence[str]) -> None:
        """Append ``lines`` and fsync (ending first a last line someone else left unterminated)."""
        if lines:
            self._append("".join(line + "\n" for line in lines).encode(), own_line=True)

    def _append(self, data: bytes, *, own_line: bool = False) -> None:
        try:
            fd, created = _open_append(self.path)
            try:
                if own_line and not _ends_a_line(fd):
                    data = b"\n" + data
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_directory(self.path.parent)
        except OSError as exc:
            raise DeliveryFailed(f"{self.target}: {_reason(exc)}") from None


def _ends_a_line(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _lines_at_end(body: bytes, encoded: list[bytes], *, at_file_start: bool) -> int:
    """The largest k such that ``body`` ends with ``encoded[:k]`` on a line boundary."""
    if not body:
        return 0
    last = body[body.rfind(b"\n", 0, len(body) - 1) + 1 :]
    index = {line: number for number, line in enumerate(encoded)}
    k = index.get(last, -1) + 1
    if k == 0:
        return 0
    joined = b"".join(encoded[:k])
    if not body.endswith(joined):
        return 0
    start = len(body) - len(joined)
    on_boundary = body[start - 1 : start] == b"\n" if start > 0 else at_file_start
    return k if on_boundary else 0


def _open_append(path: Path) -> tuple[int, bool]:
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC  # read: to look at the last byte
    while True:
        with contextlib.suppress(FileExistsError):
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        try:
            return os.open(path, flags), False
        except FileNotFoundError:  # removed in between (rotated away): create it again
            continue


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
