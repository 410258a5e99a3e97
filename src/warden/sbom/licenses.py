"""The licenses a Python distribution declares in its metadata, as CycloneDX licenses.

Sources, first that yields wins: ``License-Expression`` (PEP 639), a ``License`` field that is an
SPDX id or expression, the ``License ::`` trove classifiers, and last a short one-line ``License``
field as a license name. A classifier that names one license version unambiguously becomes its
SPDX id; one that does not (``BSD License``, ``Apache Software License``) stays a name rather than
a guess.
"""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageMetadata
from typing import Final

from cyclonedx.contrib.license.exceptions import InvalidLicenseExpressionException, InvalidSpdxLicenseException
from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseAcknowledgement, LicenseExpression

_OSI: Final = "License :: OSI Approved :: "
CLASSIFIER_IDS: Final[dict[str, str]] = {
    _OSI + "MIT License": "MIT",
    _OSI + "MIT No Attribution License (MIT-0)": "MIT-0",
    _OSI + "ISC License (ISCL)": "ISC",
    _OSI + "Zero-Clause BSD (0BSD)": "0BSD",
    _OSI + "CMU License (MIT-CMU)": "MIT-CMU",
    _OSI + "Blue Oak Model License (BlueOak-1.0.0)": "BlueOak-1.0.0",
    _OSI + "Common Development and Distribution License 1.0 (CDDL-1.0)": "CDDL-1.0",
    _OSI + "Mozilla Public License 1.0 (MPL)": "MPL-1.0",
    _OSI + "Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    _OSI + "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    _OSI + "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    _OSI + "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    _OSI + "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    _OSI + "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    _OSI + "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    _OSI + "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    _OSI + "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    _OSI + "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    _OSI + "GNU Affero General Public License v3": "AGPL-3.0-only",
    _OSI + "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    _OSI + "Python Software Foundation License": "PSF-2.0",
    _OSI + "The Unlicense (Unlicense)": "Unlicense",
    _OSI + "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    _OSI + "Eclipse Public License 1.0 (EPL-1.0)": "EPL-1.0",
    _OSI + "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    _OSI + "European Union Public Licence 1.0 (EUPL 1.0)": "EUPL-1.0",
    _OSI + "European Union Public Licence 1.1 (EUPL 1.1)": "EUPL-1.1",
    _OSI + "European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    _OSI + "Open Software License 3.0 (OSL-3.0)": "OSL-3.0",
    _OSI + "SIL Open Font License 1.1 (OFL-1.1)": "OFL-1.1",
    _OSI + "PostgreSQL License": "PostgreSQL",
    _OSI + "University of Illinois/NCSA Open Source License": "NCSA",
    _OSI + "Historical Permission Notice and Disclaimer (HPND)": "HPND",
    _OSI + "Universal Permissive License (UPL)": "UPL-1.0",
    _OSI + "zlib/libpng License": "Zlib",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}
"""Trove license classifiers that name exactly one SPDX license."""

_UNINFORMATIVE: Final = frozenset({"License :: OSI Approved", "License :: DFSG approved"})
_MAX_NAME_CHARS: Final = 120
_DECLARED: Final = LicenseAcknowledgement.DECLARED
_factory: Final = LicenseFactory()


def declared_licenses(metadata: PackageMetadata) -> list[License]:
    """The licenses ``metadata`` declares, without duplicates; empty when it declares none usably."""
    for field in ("License-Expression", "License"):
        spdx = _spdx(_first(metadata, field))
        if spdx is not None:
            return [spdx]
    from_classifiers = _from_classifiers(metadata.get_all("Classifier") or [])
    if from_classifiers:
        return from_classifiers
    text = _first(metadata, "License")
    if text and "\n" not in text and len(text) <= _MAX_NAME_CHARS:
        return [DisjunctiveLicense(name=text, acknowledgement=_DECLARED)]
    return []


def _first(metadata: PackageMetadata, field: str) -> str:
    values = metadata.get_all(field) or []
    return str(values[0]).strip() if values else ""


def _spdx(value: str) -> License | None:
    """An SPDX id or expression as a license; ``None`` for anything else (a name, or a whole license text)."""
    if not value or "\n" in value:
        return None
    with contextlib.suppress(InvalidSpdxLicenseException):  # not an id: perhaps an expression
        return _factory.make_with_id(value, acknowledgement=_DECLARED)
    try:
        expression: LicenseExpression = _factory.make_with_expression(value, acknowledgement=_DECLARED)
    except InvalidLicenseExpressionException:
        return None
    return expression


def _from_classifiers(classifiers: list[str]) -> list[License]:
    ids: list[str] = []
    names: list[str] = []
    for raw in classifiers:
        classifier = raw.strip()
        if not classifier.startswith("License ::") or classifier in _UNINFORMATIVE:
            continue
        spdx_id = CLASSIFIER_IDS.get(classifier)
        if spdx_id is not None:
            ids.append(spdx_id)
        else:
            names.append(classifier.rsplit(" :: ", 1)[-1])
    licenses: list[License] = [DisjunctiveLicense(id=i, acknowledgement=_DECLARED) for i in dict.fromkeys(ids)]
    licenses += [DisjunctiveLicense(name=n, acknowledgement=_DECLARED) for n in dict.fromkeys(names)]
    return licenses
