"""Job images: only references pinned by a sha256 digest, and only those the allow-list allows when it is set."""

from __future__ import annotations

import pytest

from warden.jobs.images import ImageRef, ImageRefused, check_allowed, parse_image

DIGEST = "0123456789abcdef" * 4
OTHER = "f" * 64


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (f"trainer@sha256:{DIGEST}", ImageRef("trainer", DIGEST)),
        (f"trainer:v2.9@sha256:{DIGEST}", ImageRef("trainer", DIGEST, "v2.9")),
        (f"ghcr.io/team/trainer:1.0@sha256:{DIGEST}", ImageRef("ghcr.io/team/trainer", DIGEST, "1.0")),
        (f"registry.local:5000/a/b/c@sha256:{DIGEST}", ImageRef("registry.local:5000/a/b/c", DIGEST)),
        (f"localhost:5000/trainer:latest@sha256:{DIGEST}", ImageRef("localhost:5000/trainer", DIGEST, "latest")),
        (f"  trainer@sha256:{DIGEST}\n", ImageRef("trainer", DIGEST)),
    ],
)
def test_when_an_image_is_pinned_by_digest_then_it_parses(reference: str, expected: ImageRef) -> None:
    image = parse_image(reference)
    assert image == expected
    assert parse_image(image.pinned) == image
    assert str(image) == image.pinned


@pytest.mark.parametrize(
    ("reference", "needle"),
    [
        ("trainer", "not pinned by digest"),
        ("trainer:latest", "not pinned by digest"),
        ("pytorch_cuda:v2.9", "not pinned by digest"),
        (f"trainer@sha256:{DIGEST[:-1]}", "not a valid"),
        (f"trainer@sha256:{DIGEST.upper()}", "not a valid"),
        (f"trainer@sha512:{DIGEST}{DIGEST}", "not a valid"),
        (f"Trainer@sha256:{DIGEST}", "not a valid"),
        (f"trainer:@sha256:{DIGEST}", "not a valid"),
        (f"@sha256:{DIGEST}", "not a valid"),
        (f"trainer@sha256:{DIGEST} --privileged", "not a valid"),
    ],
)
def test_when_an_image_is_not_pinned_then_it_is_refused(reference: str, needle: str) -> None:
    with pytest.raises(ImageRefused, match=needle) as caught:
        parse_image(reference)
    assert caught.value.code == "image_refused"


IMAGE = parse_image(f"registry.example/team/trainer:v1@sha256:{DIGEST}")


@pytest.mark.parametrize(
    ("allowlist", "allowed"),
    [
        ([], True),
        (["registry.example/team/trainer"], True),
        (["registry.example/team/*"], True),
        ([f"registry.example/team/trainer@sha256:{DIGEST}"], True),
        ([f"registry.example/team/trainer:other-tag@sha256:{DIGEST}"], True),  # the tag is only a label
        ([f"registry.example/team/trainer@sha256:{OTHER}"], False),
        (["registry.example/team/trainer-old"], False),
        (["registry.example/other/*"], False),
        (["registry.example/team"], False),
        (["evil.example/*", "registry.example/team/trainer"], True),
    ],
)
def test_the_allow_list_allows_repositories_or_exact_digests(allowlist: list[str], allowed: bool) -> None:
    if allowed:
        check_allowed(IMAGE, allowlist)
    else:
        with pytest.raises(ImageRefused, match="not on the job image allow-list"):
            check_allowed(IMAGE, allowlist)
