"""Shipping the audit trail: real syslog receivers (TCP and TLS) on loopback, files, and resumable positions."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import os
import re
import socket
import socketserver
import ssl
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import text

from tests.audit.conftest import MakeLog, request_event, write
from tests.audit.formats import SD_PARAM, SYSLOG
from warden.audit.export import SD_ID, export_lines
from warden.audit.query import scan
from warden.audit.ship import (
    Shipper,
    Target,
    advance,
    check_format,
    check_name,
    load_positions,
    open_sink,
)
from warden.audit.sinks import FileSink, TargetKind, octet_counted
from warden.errors import Conflict, DeliveryFailed, InvalidArgument, StorageCorrupt
from warden.storage import Database

# --- a real syslog receiver ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One RFC 5424 message as received: its stream and seq (from the structured data) and its text."""

    stream: str
    seq: int
    text: str


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    receiver: Receiver


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.receiver.serve(self.request)


class Receiver:
    """A syslog receiver on 127.0.0.1 (TCP, or TLS with ``tls``) reading octet-counted RFC 5424 frames.

    It reads exactly one frame at a time (nothing is buffered beyond the frame it parses), checks
    each against the RFC 5424 grammar and that its structured data and message agree, and keeps
    them in arrival order. Faults to inject, each closing a connection the way a crashing
    process does (``close`` with input unread, so the kernel answers with a reset): ``abort_after``
    (once, after that many frames in all), ``refuse_after`` (every connection, at once, after
    that many frames in all); ``on_frame`` is called with each message.
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
        abort_after: int | None = None,
        refuse_after: int | None = None,
        on_frame: Callable[[Message], None] | None = None,
    ) -> None:
        self.tls = tls
        self.abort_after = abort_after
        self.refuse_after = refuse_after
        self.on_frame = on_frame
        self.messages: list[Message] = []
        self.errors: list[str] = []
        self.handshake_errors: list[str] = []
        self.connections = 0
        self._cond = threading.Condition()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.receiver = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The shipping target URL of this receiver."""
        return f"syslog+{'tcp' if self.tls is None else 'tls'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def seqs(self, stream: str = "r1") -> list[int]:
        """The seqs received from ``stream``, in arrival order (duplicates included)."""
        with self._cond:
            return [m.seq for m in self.messages if m.stream == stream]

    def wait_for(self, count: int, timeout: float = 30) -> bool:
        """Whether ``count`` messages arrived within ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= count, timeout)

    def serve(self, connection: socket.socket) -> None:
        """Handle one connection (called in the server's thread for it)."""
        with self._cond:
            self.connections += 1
            refusing = self.refuse_after is not None and len(self.messages) >= self.refuse_after
        if refusing:
            connection.close()  # like a crashed receiver: whatever the shipper sends is answered with a reset
            return
        if self.tls is not None:
            try:
                connection = self.tls.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(str(exc))
                return
        try:
            while (frame := _read_frame(connection)) is not None:
                if not self._accept(frame):
                    connection.close()  # as a crash closes it: with the rest unread, so the kernel resets it
                    return
            if isinstance(connection, ssl.SSLSocket):
                connection.unwrap()  # answer the shipper's close_notify
        except (OSError, ValueError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if isinstance(connection, ssl.SSLSocket):
                connection.close()

    def _accept(self, frame: bytes) -> bool:
        message = _parse(frame)
        with self._cond:
            self.messages.append(message)
            count = len(self.messages)
            self._cond.notify_all()
        if self.on_frame is not None:
            self.on_frame(message)
        if self.abort_after is not None and count >= self.abort_after:
            self.abort_after = None
            return False
        return self.refuse_after is None or count < self.refuse_after


def _read_frame(connection: socket.socket) -> bytes | None:
    """One RFC 6587 octet-counted frame (``MSG-LEN SP SYSLOG-MSG``), read exactly; ``None`` at a clean end."""
    digits = b""
    while True:
        char = connection.recv(1)
        if not char:
            if digits:
                raise ValueError(f"the stream ended inside MSG-LEN {digits!r}")
            return None
        if char == b" ":
            break
        if not char.isdigit() or (not digits and char == b"0") or len(digits) >= 9:
            raise ValueError(f"MSG-LEN is NONZERO-DIGIT *DIGIT, not {digits + char!r}")
        digits += char
    if not digits:
        raise ValueError("empty MSG-LEN")
    length = int(digits)
    data = bytearray()
    while len(data) < length:
        chunk = connection.recv(length - len(data))
        if not chunk:
            raise ValueError(f"the stream ended {length - len(data)} octets into a {length}-octet frame")
        data += chunk
    return bytes(data)


def _parse(frame: bytes) -> Message:
    """Check a frame is one well-formed RFC 5424 message of ours, and name its stream and seq."""
    text_ = frame.decode("utf-8")
    match = SYSLOG.fullmatch(text_)
    assert match is not None, f"not RFC 5424: {text_!r}"
    assert match["sdid"] == SD_ID
    assert int(match["pri"]) // 8 == 13  # log audit
    params = {name: re.sub(r"\\([\"\\\]])", r"\1", value) for name, value in SD_PARAM.findall(match["params"])}
    body = json.loads(match["msg"])
    assert (body["stream"], str(body["seq"]), body["hash"]) == (params["stream"], params["seq"], params["hash"])
    assert match["host"] == params["stream"]
    return Message(params["stream"], int(params["seq"]), text_)


# --- a CA and server certificates made for the test ---------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A self-signed CA (``ca_file``) and server contexts whose certificates it signed."""

    directory: Path
    ca_file: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A TLS server context with a certificate for ``names`` (DNS names or IP addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        alt_names: list[x509.GeneralName] = []
        for name in names:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt_names.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        stem = self.directory / f"server-{x509.random_serial_number()}"
        cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context


def make_pki(directory: Path) -> Pki:
    """A fresh CA in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "warden test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(directory, ca_file, key, cert)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One CA for the module's TLS tests."""
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- helpers ------------------------------------------------------------------------------------------------------


def shipper(db: Database, target: str, *, ca_file: Path | None = None, **options: Any) -> Shipper:
    """A shipper to ``target`` with short retry delays (tests never wait long for a retry)."""
    options.setdefault("first_delay", 0.01)
    options.setdefault("max_delay", 0.05)
    parsed = Target.parse(target)
    options.setdefault("format_", check_format(parsed, None))
    return Shipper(db, open_sink(parsed, ca_file=ca_file, timeout=10), **options)


def expected_lines(db: Database, stream: str, format_: str = "jsonl") -> list[str]:
    """Every record of ``stream`` as the export renders it, in seq order."""
    entries = [e for e in scan(db, order="seq") if e.stream == stream]
    return list(export_lines(entries, format_))


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A plain TCP syslog receiver."""
    with Receiver() as running:
        yield running


# --- framing and targets ------------------------------------------------------------------------------------------


def test_octet_counting_frames_count_octets_not_characters() -> None:
    assert octet_counted(["<110>1 a", "é"]) == b"8 <110>1 a2 \xc3\xa9"


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("syslog+tcp://127.0.0.1:514", TargetKind.SYSLOG_TCP, ("127.0.0.1", 514)),
        ("SYSLOG+TLS://siem.example:6514/", TargetKind.SYSLOG_TLS, ("siem.example", 6514)),
        ("syslog+tcp://[::1]:601", TargetKind.SYSLOG_TCP, ("::1", 601)),
        ("file:///var/log/warden%20audit.jsonl", TargetKind.FILE, Path("/var/log/warden audit.jsonl")),
        ("file://localhost/tmp/a.jsonl", TargetKind.FILE, Path("/tmp/a.jsonl")),  # noqa: S108 - only parsed
    ],
)
def test_when_a_target_url_is_well_formed_then_it_parses(url: str, kind: TargetKind, where: object) -> None:
    target = Target.parse(url)
    assert target.kind is kind
    assert (target.path if kind is TargetKind.FILE else (target.host, target.port)) == where
    assert Target.parse(str(target)) == target


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("udp://127.0.0.1:514", "unknown scheme"),
        ("syslog://127.0.0.1:514", "unknown scheme"),
        ("syslog+tcp://127.0.0.1", "has no port"),
        ("syslog+tcp://127.0.0.1:0", "out of range"),
        ("syslog+tcp://127.0.0.1:70000", "not a valid URL"),
        ("syslog+tcp://127.0.0.1:http", "not a valid URL"),
        ("syslog+tcp://:514", "has no host"),
        ("syslog+tls://siem:6514/path", "may not have a path"),
        ("syslog+tls://user:pw@siem:6514", "user info"),
        ("syslog+tcp://siem:514?x=1", "query"),
        ("file://audit.jsonl", "relative path"),
        ("file:///", "not an absolute file path"),
        ("/var/log/audit.jsonl", "unknown scheme"),
    ],
)
def test_when_a_target_url_is_wrong_then_it_is_an_invalid_argument(url: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        Target.parse(url)


def test_syslog_receivers_take_rfc_5424_and_files_take_any_format(tmp_path: Path) -> None:
    tcp = Target.parse("syslog+tcp://127.0.0.1:514")
    assert check_format(tcp, None) == "syslog"
    assert check_format(Target.parse(f"file://{tmp_path}/a"), None) == "jsonl"
    assert check_format(Target.parse(f"file://{tmp_path}/a"), "cef") == "cef"
    with pytest.raises(InvalidArgument, match="takes RFC 5424"):
        check_format(tcp, "jsonl")
    with pytest.raises(InvalidArgument, match="unknown format"):
        check_format(tcp, "xml")


def test_bad_names_ca_files_and_file_targets_are_invalid_arguments(tmp_path: Path) -> None:
    assert check_name("siem-1.prod_a") == "siem-1.prod_a"
    for bad in ("", "-x", "a b", "x" * 65, "ä"):
        with pytest.raises(InvalidArgument, match="--name"):
            check_name(bad)
    with pytest.raises(InvalidArgument, match="syslog\\+tls:// targets only"):
        open_sink(Target.parse("syslog+tcp://127.0.0.1:514"), ca_file=tmp_path / "ca.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(InvalidArgument, match="--ca-file"):
        open_sink(Target.parse("syslog+tls://127.0.0.1:6514"), ca_file=tmp_path / "junk.pem")
    with pytest.raises(InvalidArgument, match="does not exist"):
        open_sink(Target.parse(f"file://{tmp_path}/missing/out.jsonl"))
    with pytest.raises(InvalidArgument, match="is a directory"):
        open_sink(Target.parse(f"file://{tmp_path}"))


# --- syslog over TCP ----------------------------------------------------------------------------------------------


def test_when_shipping_then_a_tcp_receiver_gets_every_record_as_an_octet_counted_rfc_5424_message(
    make_log: MakeLog, db: Database, receiver: Receiver
) -> None:
    write(make_log("r1"), 7)
    write(make_log("r2"), 5, tenant="beta")
    report = shipper(db, receiver.url, batch=3).run()
    assert receiver.errors == []
    assert receiver.seqs("r1") == list(range(1, 8))
    assert receiver.seqs("r2") == list(range(1, 6))
    assert [m.text for m in receiver.messages if m.stream == "r1"] == expected_lines(db, "r1", "syslog")
    assert (report.shipped, report.batches, report.retries) == (12, 5, 0)
    assert receiver.connections == 5  # one connection per batch, closed in order to confirm it
    assert report.positions == {"r1": 7, "r2": 5} == load_positions(db, "default")
    assert report.to_dict()["streams"] == {
        "r1": {"records": 7, "first_seq": 1, "last_seq": 7},
        "r2": {"records": 5, "first_seq": 1, "last_seq": 5},
    }


def test_when_shipping_again_then_it_resumes_after_the_last_delivered_record_without_gap_or_duplicate(
    make_log: MakeLog, db: Database, receiver: Receiver
) -> None:
    log = make_log("r1")
    write(log, 9)
    assert shipper(db, receiver.url, batch=4).run().shipped == 9
    write(log, 6, start=10)
    again = shipper(db, receiver.url, batch=4).run()  # a new process: the position comes from the database
    assert (again.shipped, again.to_dict()["streams"]["r1"]["first_seq"]) == (6, 10)
    assert receiver.seqs() == list(range(1, 16))
    assert shipper(db, receiver.url).run().shipped == 0
    assert len(receiver.messages) == 15
    other = shipper(db, receiver.url, name="second-siem").run()  # another name has a position of its own
    assert other.shipped == 15


@pytest.mark.parametrize(("abort_after", "repeated"), [(6, [5, 6]), (8, [])])
def test_when_the_receiver_drops_the_connection_mid_batch_then_every_record_arrives_and_only_that_batch_repeats(
    make_log: MakeLog, db: Database, abort_after: int, repeated: list[int]
) -> None:
    write(make_log("r1"), 10)
    with Receiver(abort_after=abort_after) as receiver:
        report = shipper(db, receiver.url, batch=4, attempts=5).run()
    seqs = receiver.seqs()
    assert receiver.errors == []
    assert sorted(set(seqs)) == list(range(1, 11))  # no gap
    assert list(dict.fromkeys(seqs)) == list(range(1, 11))  # in chain order
    duplicates = sorted(seq for seq, count in Counter(seqs).items() if count > 1)
    assert duplicates == repeated  # only what the receiver read of the batch it dropped (seq 5-8)
    assert all(count <= 2 for count in Counter(seqs).values())
    assert report.retries == (1 if repeated else 0)
    assert load_positions(db, "default") == {"r1": 10}


def test_when_the_receiver_is_down_then_the_shipper_waits_and_delivers_when_it_comes_up(
    make_log: MakeLog, db: Database
) -> None:
    write(make_log("r1"), 5)
    port = free_port()
    stop, waiting = threading.Event(), threading.Event()
    failures: list[str] = []

    def on_retry(error: DeliveryFailed, _delay: float) -> None:
        failures.append(error.message)
        if len(failures) >= 3:
            waiting.set()

    follower = shipper(db, f"syslog+tcp://127.0.0.1:{port}", on_retry=on_retry, batch=2)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(follower.run(follow=True, poll=0.02, stop=stop)))
    thread.start()
    try:
        assert waiting.wait(30), "the shipper never retried"
        assert load_positions(db, "default") == {}  # nothing delivered, nothing skipped
        with Receiver(port=port) as receiver:
            assert receiver.wait_for(5)
            write(make_log("r1"), 2, start=6)  # following: new records go out too
            assert receiver.wait_for(7)
            stop.set()
            thread.join(30)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert "Connection refused" in failures[0]
    assert receiver.seqs() == list(range(1, 8))
    [report] = result
    assert (report.shipped, report.retries >= 3) == (7, True)
    assert load_positions(db, "default") == {"r1": 7}


def test_when_stopped_while_waiting_for_a_receiver_then_it_returns_at_once_with_nothing_committed(
    make_log: MakeLog, db: Database
) -> None:
    write(make_log("r1"), 3)
    stop = threading.Event()
    follower = shipper(db, f"syslog+tcp://127.0.0.1:{free_port()}", on_retry=lambda _e, _d: stop.set())
    report = follower.run(follow=True, poll=0.02, stop=stop)
    assert (report.shipped, report.retries) == (0, 1)
    assert load_positions(db, "default") == {}


def test_when_stopped_during_a_batch_then_the_batch_is_finished_and_its_position_committed(
    make_log: MakeLog, db: Database
) -> None:
    write(make_log("r1"), 10)
    stop = threading.Event()
    with Receiver(on_frame=lambda _message: stop.set()) as receiver:
        report = shipper(db, receiver.url, batch=4).run(follow=True, poll=0.02, stop=stop)
    assert receiver.seqs() == [1, 2, 3, 4]
    assert report.shipped == 4
    assert load_positions(db, "default") == {"r1": 4}


def test_when_the_receiver_stays_down_then_a_bounded_run_fails_and_keeps_what_was_delivered(
    make_log: MakeLog, db: Database
) -> None:
    write(make_log("r1"), 7)
    with Receiver(refuse_after=3) as receiver:
        bounded = shipper(db, receiver.url, batch=3, attempts=3)
        with pytest.raises(DeliveryFailed, match="gave up after 3 attempts; 3 records were delivered before"):
            bounded.run()
    assert receiver.seqs() == [1, 2, 3]
    assert load_positions(db, "default") == {"r1": 3}


# --- syslog over TLS ----------------------------------------------------------------------------------------------


def test_when_shipping_over_tls_then_the_receiver_gets_every_record(make_log: MakeLog, db: Database, pki: Pki) -> None:
    write(make_log("r1"), 6)
    with Receiver(tls=pki.server_context("localhost", "127.0.0.1")) as receiver:
        report = shipper(db, receiver.url, ca_file=pki.ca_file, batch=4).run()
    assert receiver.errors == []
    assert receiver.handshake_errors == []
    assert receiver.seqs() == list(range(1, 7))
    assert (report.shipped, report.retries) == (6, 0)
    assert load_positions(db, "default") == {"r1": 6}


@pytest.mark.parametrize(
    ("names", "ca", "needle"),
    [
        (("siem.example",), True, "mismatch, certificate is not valid for '127.0.0.1'"),  # host name verification is on
        (("127.0.0.1",), False, "unable to get local issuer certificate"),  # the system store does not know our CA
    ],
)
def test_when_the_tls_receiver_cannot_be_verified_then_nothing_is_sent_or_committed(
    make_log: MakeLog, db: Database, pki: Pki, names: tuple[str, ...], ca: bool, needle: str
) -> None:
    write(make_log("r1"), 2)
    with Receiver(tls=pki.server_context(*names)) as receiver:
        bounded = shipper(db, receiver.url, ca_file=pki.ca_file if ca else None, attempts=1)
        with pytest.raises(DeliveryFailed, match=f"certificate was refused: .*{needle}"):
            bounded.run()
    assert receiver.messages == []
    assert load_positions(db, "default") == {}


# --- files --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format_", ["jsonl", "syslog", "cef"])
def test_when_shipping_to_a_file_then_lines_are_appended_fsynced_and_the_file_is_private(
    make_log: MakeLog, db: Database, tmp_path: Path, format_: str
) -> None:
    log = make_log("r1")
    write(log, 5)
    out = tmp_path / "audit.out"
    first = shipper(db, f"file://{out}", batch=2, format_=format_).run()
    assert first.shipped == 5
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    write(log, 3, start=6)
    assert shipper(db, f"file://{out}", batch=2, format_=format_).run().shipped == 3
    assert out.read_text().splitlines() == expected_lines(db, "r1", format_)
    assert load_positions(db, "default") == {"r1": 8}


def test_when_a_file_got_a_batch_whose_position_was_never_committed_then_a_restart_does_not_write_it_twice(
    make_log: MakeLog, db: Database, tmp_path: Path
) -> None:
    write(make_log("r1"), 10)
    out = tmp_path / "audit.jsonl"
    lines = expected_lines(db, "r1")
    assert shipper(db, f"file://{out}", batch=4).run().shipped == 10
    with db.engine.begin() as connection:  # as if the process died after its fsync of 5-10, before the commit
        connection.execute(text("UPDATE audit_ship_positions SET seq = 4"))
    report = shipper(db, f"file://{out}", batch=4).run()
    assert (report.recovered, report.shipped) == (6, 0)
    assert out.read_text().splitlines() == lines
    assert load_positions(db, "default") == {"r1": 10}


def test_when_a_crash_tore_the_last_line_then_a_restart_completes_it(
    make_log: MakeLog, db: Database, tmp_path: Path
) -> None:
    write(make_log("r1"), 6)
    out = tmp_path / "audit.jsonl"
    lines = expected_lines(db, "r1")
    out.write_text("".join(line + "\n" for line in lines[:3]) + lines[3][:17])  # 1-3 whole, 4 torn
    report = shipper(db, f"file://{out}", batch=10).run()
    assert (report.recovered, report.shipped) == (4, 2)  # 1-3, and 4 completed from its torn start
    assert out.read_text().splitlines() == lines


def test_when_the_file_ends_with_someone_elses_unterminated_line_then_ours_start_on_a_line_of_their_own(
    make_log: MakeLog, db: Database, tmp_path: Path
) -> None:
    write(make_log("r1"), 2)
    out = tmp_path / "audit.jsonl"
    out.write_text("operator note")
    assert shipper(db, f"file://{out}").run().shipped == 2
    assert out.read_text().splitlines() == ["operator note", *expected_lines(db, "r1")]


def test_a_file_sink_finds_only_whole_lines_of_ours_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    sink = FileSink(out)
    assert sink.resume(["x", "y"]) == 0  # no file yet
    out.write_text("older\nx\n")
    assert sink.resume(["x", "y"]) == 1
    out.write_text("older\nxx\n")  # ends with "x\n" but not on a line boundary
    assert sink.resume(["x", "y"]) == 0
    out.write_text("x\ny\n")
    assert sink.resume(["x", "y", "z"]) == 2
    out.write_text("x\ny\nzz\nxx")  # a torn line that is not the start of the next line
    assert sink.resume(["x", "y", "z"]) == 0
    assert out.read_text() == "x\ny\nzz\nxx"


# --- positions ----------------------------------------------------------------------------------------------------


def test_a_position_only_moves_from_the_value_it_was_read_at(db: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    advance(db, "siem", "r1", old=0, new=3, now=now)
    with pytest.raises(Conflict, match="another 'warden audit ship --name siem' is running"):
        advance(db, "siem", "r1", old=0, new=5, now=now)  # a second shipper of the same name
    with pytest.raises(Conflict):
        advance(db, "siem", "r1", old=2, new=5, now=now)
    advance(db, "siem", "r1", old=3, new=5, now=now)
    advance(db, "siem", "r2", old=0, new=1, now=now)
    assert load_positions(db, "siem") == {"r1": 5, "r2": 1}
    assert load_positions(db, "other") == {}


def test_when_retention_removed_unshipped_records_then_the_gap_is_reported_and_the_rest_shipped(
    make_log: MakeLog, db: Database, receiver: Receiver
) -> None:
    log = make_log("r1")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    for number in range(1, 6):
        log.record(request_event(number, time=old)).result(timeout=30)
    write(log, 3, start=6)
    assert log.prune(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).removed == 5
    report = shipper(db, receiver.url).run()
    assert report.pruned == [("r1", 1, 5)]
    assert receiver.seqs() == [6, 7, 8]
    assert load_positions(db, "default") == {"r1": 8}


def test_when_a_record_is_missing_without_a_retention_cut_then_nothing_after_it_is_shipped(
    make_log: MakeLog, db: Database, receiver: Receiver
) -> None:
    write(make_log("r1"), 6)
    assert shipper(db, receiver.url, batch=2).run().shipped == 6
    write(make_log("r1"), 4, start=7)
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_records WHERE stream = 'r1' AND seq IN (7, 9)"))
    with pytest.raises(StorageCorrupt, match=r"no record 7 .* no retention cut"):
        shipper(db, receiver.url, batch=2).run()
    assert load_positions(db, "default") == {"r1": 6}
    fresh = shipper(db, receiver.url, batch=10, name="fresh")
    with pytest.raises(StorageCorrupt, match="has no record 7 \\(next is 8\\)"):
        fresh.run()  # ships 1-6, up to the hole, and stops there
    assert load_positions(db, "fresh") == {"r1": 6}
    assert receiver.seqs() == [*range(1, 7), *range(1, 7)]


def test_records_of_several_streams_take_turns_and_each_stream_stays_in_order(
    make_log: MakeLog, db: Database, receiver: Receiver
) -> None:
    write(make_log("r1"), 5)
    write(make_log("r2"), 5)
    shipper(db, receiver.url, batch=2).run()
    streams = [m.stream for m in receiver.messages]
    assert [key for key, _ in itertools.groupby(streams)] == ["r1", "r2", "r1", "r2", "r1", "r2"]
    assert receiver.seqs("r1") == receiver.seqs("r2") == [1, 2, 3, 4, 5]


def test_the_file_target_survives_rotation(make_log: MakeLog, db: Database, tmp_path: Path) -> None:
    log = make_log("r1")
    write(log, 2)
    out = tmp_path / "audit.jsonl"
    shipper(db, f"file://{out}").run()
    os.rename(out, tmp_path / "audit.jsonl.1")
    write(log, 2, start=3)
    shipper(db, f"file://{out}").run()
    lines = expected_lines(db, "r1")
    assert (tmp_path / "audit.jsonl.1").read_text().splitlines() == lines[:2]
    assert out.read_text().splitlines() == lines[2:]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
