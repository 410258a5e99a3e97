"""The de-identification entry point for the CLI and the job runner: scan, apply, auto, all sharing one analyzer.

:class:`Deidentifier` takes its collaborators (the key, the national-id schemes,
the analyzer factory) in its constructor and loads the NER pipeline once, on
first use, whatever number of files or columns it then serves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from warden.errors import InvalidPolicy
from warden.privacy.apply import ApplyReport, Progress, apply_policy
from warden.privacy.auto import auto_policy
from warden.privacy.entities import Entity, Finding
from warden.privacy.keys import DeidKey
from warden.privacy.operators import Operator
from warden.privacy.policy import Policy, TextSpec
from warden.privacy.scan import DEFAULT_SAMPLE_ROWS, ScanReport, scan_file
from warden.privacy.tables import DEFAULT_CHUNK_ROWS, Format
from warden.privacy.text import TextAnalyzer
from warden.privacy.textop import TextOperator

AnalyzerFactory = Callable[..., TextAnalyzer]
"""Builds an analyzer: ``factory(ner=..., national_ids=..., min_score=...)``."""


def default_analyzer(*, ner: bool, national_ids: Sequence[str] | None, min_score: float) -> TextAnalyzer:
    """Warden's detectors (patterns with validators, and the NER pipeline unless ``ner`` is false)."""
    return TextAnalyzer(TextAnalyzer.default(ner=ner, national_ids=national_ids).detectors, min_score=min_score)


#: Files from this size on are de-identified by several worker processes (starting them costs about a second).
PARALLEL_FROM_BYTES: Final = 32 << 20
_MAX_AUTO_WORKERS: Final = 8


def auto_workers(source: Path) -> int:
    """How many worker processes suit ``source``: one below :data:`PARALLEL_FROM_BYTES`, else one per core."""
    try:
        size = source.stat().st_size
    except OSError:
        return 1  # apply_policy reports the missing file
    if size < PARALLEL_FROM_BYTES:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), _MAX_AUTO_WORKERS))


@dataclass
class AutoResult:
    """What ``--auto`` did: the scan it decided from, the policy it derived, and the apply run."""

    scan: ScanReport
    policy: Policy
    applied: ApplyReport


class Deidentifier:
    """Scans and de-identifies files with one key, one set of national-id schemes and one NER pipeline."""

    def __init__(
        self,
        *,
        key: DeidKey | None = None,
        national_ids: Sequence[str] | None = None,
        ner: bool = True,
        analyzer_factory: AnalyzerFactory = default_analyzer,
    ) -> None:
        self.key = key
        self.national_ids = national_ids
        self.ner = ner
        self._factory = analyzer_factory
        self._analyzers: dict[tuple[bool, tuple[str, ...] | None, float], TextAnalyzer] = {}

    def __getstate__(self) -> dict[str, object]:
        """Pickle the settings, not the loaded pipelines: a worker process loads its own on first use."""
        return {**self.__dict__, "_analyzers": {}}

    def text_operator(
        self, national_ids: Sequence[str] | None, spec: TextSpec, per_entity: dict[Entity, Operator]
    ) -> Operator:
        """The ``text`` operator for a policy's spec, over this de-identifier's (cached) analyzer."""
        if spec.ner and not self.ner:
            raise InvalidPolicy(
                "ner",
                "the policy's text operator asks for NER (person names), which --no-ner turns off; "
                "set 'ner: false' on it to run without",
            )
        analyzer = self.analyzer(ner=spec.ner, national_ids=national_ids, min_score=spec.min_score)
        return TextOperator(analyzer, per_entity)

    def analyzer(
        self, *, ner: bool | None = None, national_ids: Sequence[str] | None = None, min_score: float = 0.5
    ) -> TextAnalyzer:
        """The analyzer for these settings, built once and reused."""
        use_ner = self.ner if ner is None else ner and self.ner
        schemes = national_ids if national_ids is not None else self.national_ids
        cache_key = (use_ner, None if schemes is None else tuple(schemes), min_score)
        if cache_key not in self._analyzers:
            self._analyzers[cache_key] = self._factory(ner=use_ner, national_ids=schemes, min_score=min_score)
        return self._analyzers[cache_key]

    def analyze(self, texts: Sequence[str]) -> list[list[Finding]]:
        """Entities in each text, with the default analyzer."""
        return self.analyzer().analyze_many(texts)

    def versions(self) -> dict[str, str]:
        """Detector versions of every analyzer used so far (for manifests)."""
        out: dict[str, str] = {}
        for analyzer in self._analyzers.values():
            out.update(analyzer.versions())
        return out

    def scan(
        self,
        path: Path,
        *,
        sample_rows: int = DEFAULT_SAMPLE_ROWS,
        progress: Progress | None = None,
        fmt: Format | None = None,
    ) -> ScanReport:
        """Profile a file (see :func:`warden.privacy.scan.scan_file`); ``fmt`` overrides the file name's format."""
        analyzer = self.analyzer()
        return scan_file(
            path,
            analyzer.analyze_many,
            detectors=analyzer.versions(),
            fmt=fmt,
            sample_rows=sample_rows,
            progress=progress,
        )

    def apply(
        self,
        source: Path,
        output: Path,
        policy: Policy,
        *,
        progress: Progress | None = None,
        overwrite: bool = False,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        workers: int | None = None,
    ) -> ApplyReport:
        """De-identify ``source`` into ``output`` by ``policy`` (see :func:`warden.privacy.apply.apply_policy`).

        ``workers`` defaults to :func:`auto_workers` for the file: one process for small files, one per
        available core (at most eight) from :data:`PARALLEL_FROM_BYTES` on.
        """
        return apply_policy(
            source,
            output,
            policy,
            key=self.key,
            text_factory=partial(self.text_operator, policy.national_ids),
            detectors=self.versions,
            chunk_rows=chunk_rows,
            progress=progress,
            overwrite=overwrite,
            workers=auto_workers(source) if workers is None else workers,
        )

    def auto(
        self,
        source: Path,
        output: Path,
        *,
        k: int | None = None,
        max_suppressed: float = 0.05,
        sample_rows: int = DEFAULT_SAMPLE_ROWS,
        progress: Progress | None = None,
        overwrite: bool = False,
        workers: int | None = None,
    ) -> AutoResult:
        """Scan, derive the safe-default policy, apply it."""
        report = self.scan(source, sample_rows=sample_rows)
        policy = auto_policy(report, keyed=self.key is not None, k=k, max_suppressed=max_suppressed, ner=self.ner)
        applied = self.apply(source, output, policy, progress=progress, overwrite=overwrite, workers=workers)
        return AutoResult(report, policy, applied)
