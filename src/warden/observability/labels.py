"""Bounded label values: the first N tenants (and their first M models) get labels, the rest ``other``.

Every series Prometheus stores costs memory on both sides, and tenant and model
names are unbounded, so a scrape must not grow with them. The first
``max_tenants`` tenants this process sees keep their name as the ``tenant``
label; later ones are counted under :data:`OTHER`. Likewise each labelled tenant
names at most ``max_models`` models; a folded tenant's models are all ``other``.
A tenant literally named ``other`` takes no slot and shares that label.

Requests without a tenant get a value no tenant name can take (names start with
a letter or digit): :data:`NONE` (no credential, or refused before authentication)
and :data:`OPERATOR` (an operator key).
"""

from __future__ import annotations

import threading
from typing import Final

OTHER: Final = "other"
NONE: Final = "(none)"
OPERATOR: Final = "(operator)"


class BoundedLabels:
    """Assigns ``tenant`` and ``model`` label values, first come first labelled, up to the caps."""

    def __init__(self, max_tenants: int = 100, max_models: int = 20) -> None:
        if max_tenants < 0 or max_models < 0:
            raise ValueError("label caps must not be negative")
        self.max_tenants = max_tenants
        self.max_models = max_models
        self._models: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def tenant(self, name: str | None, *, operator: bool = False) -> str:
        """The label of tenant ``name`` (``None``: :data:`OPERATOR` or :data:`NONE`)."""
        if name is None:
            return OPERATOR if operator else NONE
        if name == OTHER:
            return OTHER
        with self._lock:
            if name in self._models:
                return name
            if len(self._models) < self.max_tenants:
                self._models[name] = set()
                return name
        return OTHER

    def model(self, tenant_label: str, name: str | None) -> str:
        """The label of model ``name`` of the tenant labelled ``tenant_label`` (``None``: :data:`NONE`)."""
        if name is None:
            return NONE
        with self._lock:
            models = self._models.get(tenant_label)
            if models is None:
                return OTHER
            if name in models:
                return name
            if len(models) < self.max_models:
                models.add(name)
                return name
        return OTHER

    def tenants(self) -> list[str]:
        """The tenants labelled so far, in the order they were seen."""
        with self._lock:
            return list(self._models)
