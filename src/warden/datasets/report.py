"""The scan report a dataset version keeps: entities per column, what was done, k; never a value."""

from __future__ import annotations

from typing import Any

from warden.privacy.deid import AutoResult


def report_of(result: AutoResult) -> dict[str, Any]:
    """The JSON-safe report of an automatic de-identification run, without the scan's (masked) examples."""
    scan, applied = result.scan, result.applied
    columns = []
    for profile in scan.columns:
        done = applied.columns.get(profile.name)
        columns.append(
            {
                "name": profile.name,
                "direct_identifier": profile.direct.value if profile.direct else None,
                "quasi_identifier": profile.quasi.value if profile.quasi else None,
                "entities": {entity.value: found.cells for entity, found in sorted(profile.entities.items())},
                "op": None if done is None else done.op,
                "changed": None if done is None else done.stats.changed,
            }
        )
    return {
        "format": scan.format.value,
        "rows": applied.rows,
        "policy_sha256": applied.policy_sha256,
        "direct_identifiers": scan.direct_identifiers,
        "quasi_identifiers": scan.quasi_identifiers,
        "k": scan.k,
        "k_anonymity": None if applied.k_anonymity is None else applied.k_anonymity.to_dict(),
        "columns": columns,
        "entities_in_text": applied.entity_counts(),
        "detectors": applied.detectors or scan.detectors,
    }
