"""Software bills of materials: a CycloneDX document of the running environment and the registered models,
and an offline check of its PyPI components against an OSV export.

Inputs come in as arguments (distributions, model records, an OSV path), so the same code
serves ``warden sbom`` and tests on small real data.
"""

from warden.sbom.environment import (
    SPEC_VERSION,
    SbomFormat,
    dependency_graph,
    environment_bom,
    installed,
    pypi_purl,
    serialize,
)
from warden.sbom.licenses import declared_licenses
from warden.sbom.models import ModelRecord, add_models, model_component, registered_models
from warden.sbom.osv import OsvDatabase, VulnerabilityMatch, load_records
from warden.sbom.packages import PypiPackage, environment_packages, sbom_packages
from warden.sbom.ranges import first_fix, is_affected
from warden.sbom.severity import Severity, band, cvss_score, severity_of

__all__ = [
    "SPEC_VERSION",
    "ModelRecord",
    "OsvDatabase",
    "PypiPackage",
    "SbomFormat",
    "Severity",
    "VulnerabilityMatch",
    "add_models",
    "band",
    "cvss_score",
    "declared_licenses",
    "dependency_graph",
    "environment_bom",
    "environment_packages",
    "first_fix",
    "installed",
    "is_affected",
    "load_records",
    "model_component",
    "pypi_purl",
    "registered_models",
    "sbom_packages",
    "serialize",
    "severity_of",
]
