"""Parsers for the export formats, written from their grammars, shared by the export and CLI tests."""

from __future__ import annotations

import re

# RFC 5424 section 6: HEADER SP STRUCTURED-DATA SP MSG, with our one SD-ELEMENT.
SYSLOG = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z) (?P<host>[\x21-\x7e]{1,255}) "
    r"(?P<app>[\x21-\x7e]{1,48}) (?P<procid>[\x21-\x7e]{1,128}) (?P<msgid>[\x21-\x7e]{1,32}) "
    r"\[(?P<sdid>[^= \]\"]{1,32})(?P<params>(?: [^= \]\"]{1,32}=\"(?:[^\"\\\]]|\\[\"\\\]])*\")*)\] (?P<msg>.*)"
)
SD_PARAM = re.compile(r' ([^= \]"]+)="((?:[^"\\\]]|\\["\\\]])*)"')


def split_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Parse a CEF line: the six header fields after ``CEF:0`` and the extension pairs, unescaped."""
    assert line.startswith("CEF:0|")
    header, rest, field, i = [], line[len("CEF:0|") :], "", 0
    while len(header) < 6:
        char = rest[i]
        if char == "\\":
            field += rest[i + 1]
            i += 2
            continue
        if char == "|":
            header.append(field)
            field = ""
        else:
            field += char
        i += 1
    extension = rest[i:]
    pairs = re.split(r"(?<!\\) (?=[A-Za-z0-9]+=)", extension)
    unescape = {"\\\\": "\\", "\\=": "=", "\\n": "\n", "\\r": "\r"}
    values = {}
    for pair in pairs:
        key, value = re.split(r"(?<!\\)=", pair, maxsplit=1)
        values[key] = re.sub(r"\\[\\=nr]", lambda m: unescape[m.group()], value)
    return header, values
