"""Container images for jobs: accepted only when pinned by digest and, where an allow-list is set, on it.

A reference is ``[registry/]repository[:tag]@sha256:<64 hex>``; the tag, when given, is only a label for people,
the digest is what runs. :func:`parse_image` refuses anything else with :class:`ImageRefused`, and
:func:`check_allowed` refuses an image the allow-list (``WARDEN_JOB_IMAGE_ALLOWLIST``) does not name. An entry of
the list is either a whole pinned reference (that exact digest of that repository) or a repository pattern without
a digest (``registry.example/team/trainer``, ``registry.example/team/*``) allowing any digest of the repositories
it matches; an empty list allows any pinned image.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from warden.errors import ImageRefused

__all__ = ["ImageRef", "ImageRefused", "check_allowed", "parse_image"]

_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN: Final = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE: Final = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"@sha256:(?P<digest>[0-9a-f]{64})"
)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference: repository name, optional tag, and the sha256 digest (64 lower-case hex)."""

    name: str
    digest: str
    tag: str | None = None

    @property
    def pinned(self) -> str:
        """The reference as engines and Kubernetes take it: ``name[:tag]@sha256:…``."""
        tag = f":{self.tag}" if self.tag else ""
        return f"{self.name}{tag}@sha256:{self.digest}"

    def __str__(self) -> str:
        return self.pinned


def parse_image(reference: str) -> ImageRef:
    """Parse ``name[:tag]@sha256:<64 hex>``; anything not pinned by a sha256 digest raises :class:`ImageRefused`."""
    text = reference.strip()
    match = _REFERENCE.fullmatch(text)
    if match is None:
        if "@" not in text:
            raise ImageRefused(f"image {reference!r} is not pinned by digest: use name[:tag]@sha256:<64 hex digits>")
        raise ImageRefused(f"image {reference!r} is not a valid name[:tag]@sha256:<64 hex digits> reference")
    return ImageRef(name=match["name"], digest=match["digest"], tag=match["tag"])


def _allows(entry: str, image: ImageRef) -> bool:
    entry = entry.strip()
    if "@" in entry:
        allowed = parse_image(entry)
        return (allowed.name, allowed.digest) == (image.name, image.digest)
    return fnmatch.fnmatchcase(image.name, entry)


def check_allowed(image: ImageRef, allowlist: Sequence[str]) -> None:
    """Refuse ``image`` unless ``allowlist`` is empty or one of its entries allows it (see the module docstring)."""
    if allowlist and not any(_allows(entry, image) for entry in allowlist):
        raise ImageRefused(f"image {image.pinned} is not on the job image allow-list (WARDEN_JOB_IMAGE_ALLOWLIST)")
