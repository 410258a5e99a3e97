"""Export formats: JSON lines, RFC 5424 syslog and ArcSight CEF, parsed back by their grammars."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from tests.audit.formats import SD_PARAM, SYSLOG, split_cef
from warden import __version__
from warden.audit import AuditEntry, AuditEvent
from warden.audit.export import export_lines, to_cef, to_jsonl, to_syslog
from warden.errors import InvalidArgument

NASTY = 'a|b=c\\d]e"f\ng\rh'
MOMENT = datetime(2026, 11, 22, 10, 0, 0, 250000, tzinfo=UTC)


def entry(event: AuditEvent, seq: int = 7) -> AuditEntry:
    """An entry of stream ``replica-1``."""
    return AuditEntry("replica-1", seq, "ab" * 32, event)


def request(**values: object) -> AuditEvent:
    """A request event at a fixed time."""
    fields: dict[str, object] = {"tenant": "acme", "request_id": "r-1", "status": 200, "key_id": "0123456789ab"}
    fields.update(values)
    return AuditEvent.request(time=MOMENT, **fields)


def test_jsonl_is_the_entry_as_sorted_compact_json() -> None:
    line = to_jsonl(entry(request(target=NASTY)))
    assert "\n" not in line
    data = json.loads(line)
    assert data == {"stream": "replica-1", "seq": 7, "hash": "ab" * 32, "event": request(target=NASTY).to_dict()}
    assert line == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_a_syslog_line_follows_rfc_5424_and_its_parameters_unescape_to_the_values() -> None:
    line = to_syslog(entry(request(target=NASTY, total_ms=2.5)))
    assert "\n" not in line
    assert "\r" not in line
    match = SYSLOG.fullmatch(line)
    assert match is not None, line
    assert match["pri"] == str(13 * 8 + 6)  # log audit, informational
    assert (match["time"], match["host"], match["app"], match["procid"], match["msgid"]) == (
        "2026-11-22T10:00:00.250000Z",
        "replica-1",
        "warden",
        "-",
        "request",
    )
    assert match["sdid"] == "warden@32473"
    params = {name: re.sub(r"\\([\"\\\]])", r"\1", value) for name, value in SD_PARAM.findall(match["params"])}
    assert params["stream"] == "replica-1"
    assert params["seq"] == "7"
    assert params["tenant"] == "acme"
    assert params["total_ms"] == "2.5"
    assert params["target"] == NASTY.replace("\n", "\\u000a").replace("\r", "\\u000d")
    assert json.loads(match["msg"]) == entry(request(target=NASTY, total_ms=2.5)).to_dict()
    assert match["msg"].isascii()


@pytest.mark.parametrize(
    ("event", "severity"),
    [
        (request(status=200), 6),
        (request(status=429, error_code="rate_limited"), 5),
        (request(status=503, error_code="audit_unavailable"), 4),
        (AuditEvent.admin("key.revoke", "abc", time=MOMENT), 5),
    ],
)
def test_syslog_severity_follows_the_outcome(event: AuditEvent, severity: int) -> None:
    assert to_syslog(entry(event)).startswith(f"<{13 * 8 + severity}>1 ")


def test_a_cef_line_escapes_its_header_and_extension_and_parses_back() -> None:
    event = AuditEvent.admin(NASTY, "acme", time=MOMENT, key_id="0123456789ab", details={"why": NASTY})
    line = to_cef(entry(event))
    assert "\n" not in line
    assert "\r" not in line
    header, ext = split_cef(line)
    assert header[:3] == ["Warden", "Warden", __version__]
    assert header[3] == NASTY.replace("\n", " ").replace("\r", " ").replace("  ", " ")  # no line breaks in a header
    assert header[5] == "3"
    assert ext["act"] == NASTY
    assert ext["suid"] == "0123456789ab"
    assert ext["cs5Label"] == "target"
    assert ext["cs5"] == "acme"
    assert json.loads(ext["msg"]) == {"why": NASTY}
    assert ext["rt"] == str(int(MOMENT.timestamp() * 1000))
    assert (ext["dvchost"], ext["cn1"], ext["cs3"]) == ("replica-1", "7", "ab" * 32)


def test_a_cef_request_line_carries_outcome_latency_and_image_size() -> None:
    event = request(status=503, error_code="over_capacity", total_ms=12.5, image_bytes=2048, image_width=64)
    header, ext = split_cef(to_cef(entry(event)))
    assert header[3:] == ["request", "inference request", "6"]
    assert (ext["outcome"], ext["reason"], ext["cfp3Label"], ext["cfp3"]) == ("503", "over_capacity", "totalMs", "12.5")
    assert (ext["in"], ext["flexNumber1Label"], ext["flexNumber1"]) == ("2048", "imageWidth", "64")
    assert (ext["cs1Label"], ext["cs1"], ext["externalId"]) == ("tenant", "acme", "r-1")


def test_export_lines_renders_each_entry_and_refuses_an_unknown_format() -> None:
    entries = [entry(request(), seq) for seq in (1, 2)]
    assert list(export_lines(entries, "jsonl")) == [to_jsonl(e) for e in entries]
    with pytest.raises(InvalidArgument, match="unknown export format"):
        export_lines(entries, "xml")
