"""What one run's record says: how it ended (:class:`JobStatus`), the exit status ``warden job run`` passes on,
and the manifest kept beside the output (:meth:`JobReport.manifest`).

Kept apart from :mod:`warden.jobs.runner`, which runs the job and writes this record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from warden.jobs.admission import Admission
from warden.jobs.outputs import OutputFile
from warden.jobs.sandbox import SandboxResult

__all__ = ["LIMIT_EXIT_STATUS", "JobReport", "JobStatus"]

LIMIT_EXIT_STATUS: Final = 122
"""What ``warden job run`` exits with when the job was stopped at its output or log limit."""


class JobStatus(StrEnum):
    """How a run ended, as the manifest, the ``job.end`` audit event and ``--json`` name it."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OOM_KILLED = "oom_killed"
    LIMIT_EXCEEDED = "limit_exceeded"


@dataclass
class JobReport:
    """What happened: the admission, the sandbox's result, the outputs, and where the record was written."""

    admission: Admission
    result: SandboxResult
    outputs: list[OutputFile]
    record_dir: Path
    actor: str
    backend: str = "bwrap"
    image: str | None = None
    env_names: Sequence[str] = ()
    max_output_bytes: int | None = None
    max_log_bytes: int | None = None
    gpus: Sequence[str] = ()
    """The devices the job was leased (``0``, ``GPU-…``, ``MIG-…``)."""

    @property
    def status(self) -> JobStatus:
        """How the run ended; a limit the job was stopped at comes first, whatever its exit status then was."""
        if self.result.limit_exceeded is not None:
            return JobStatus.LIMIT_EXCEEDED
        if self.result.timed_out:
            return JobStatus.TIMED_OUT
        if self.result.oom_killed:
            return JobStatus.OOM_KILLED
        return JobStatus.OK if self.result.exit_code == 0 else JobStatus.FAILED

    @property
    def exit_status(self) -> int:
        """The status ``warden job run`` exits with: the job's own, 124 after a timeout (as ``timeout`` does), 122
        when it was stopped at its output or log limit."""
        if self.result.limit_exceeded is not None:
            return LIMIT_EXIT_STATUS
        if self.result.timed_out:
            return 124
        return self.result.exit_code if self.result.exit_code is not None else 1

    def exit_description(self) -> str:
        """How the job ended, in a few words (``exited 0``, ``killed by signal 9``, ``timed out``)."""
        if self.result.limit_exceeded is not None:
            return f"stopped: limit_exceeded ({self.result.limit_exceeded})"
        if self.result.timed_out:
            return "timed out"
        if self.result.oom_killed:
            return "killed: out of memory"
        if self.result.signal is not None:
            return f"killed by signal {self.result.signal}"
        return f"exited {self.result.exit_code}"

    def manifest(self) -> dict[str, Any]:
        """The run's manifest: approval, purpose, inputs and outputs with their hashes, command, limits, status.

        The environment appears by name only (``env``); ``argv`` never holds a value (bwrap reads them from a
        descriptor, the container engines from a private file).
        """
        approval = self.admission.approval
        return {
            "warden_job": 1,
            "actor": self.actor,
            "approval": approval.id,
            "purpose": approval.purpose,
            "inputs": [{"name": i.name, "sha256": i.sha256} for i in self.admission.inputs],
            "not_scanned": self.admission.not_scanned,
            "backend": self.backend,
            "image": self.image,
            "argv": list(self.result.argv),
            "env": sorted(self.env_names),
            "gpus": list(self.gpus),
            "limits": dict(self.result.limits),
            "max_output_bytes": self.max_output_bytes,
            "max_log_bytes": self.max_log_bytes,
            "status": self.status.value,
            "limit_exceeded": self.result.limit_exceeded,
            "started": self.result.started.isoformat(),
            "ended": self.result.ended.isoformat(),
            "exit_code": self.result.exit_code,
            "signal": self.result.signal,
            "timed_out": self.result.timed_out,
            "oom_killed": self.result.oom_killed,
            "landlock_abi": self.result.landlock_abi,
            "outputs": [
                {
                    "path": o.path,
                    "kind": o.kind,
                    "sha256": o.sha256,
                    "size": o.size,
                    "link_target": o.link_target,
                    "error": o.error,
                    "released": o.released,
                }
                for o in self.outputs
            ],
        }
