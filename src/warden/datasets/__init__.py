"""Tenants' datasets: de-identified on ingestion under a tenant-owned key, stored encrypted, erasable."""

from warden.datasets.service import FORMATS, DatasetService
from warden.datasets.views import DatasetVersionView, DatasetView

__all__ = ["FORMATS", "DatasetService", "DatasetVersionView", "DatasetView"]
