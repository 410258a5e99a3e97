"""The audit trail: metadata-only events in a hash chain per replica, committed in groups, signed, verifiable.

``AuditLog`` is the entry point (``Services.audit``): ``record``/``arecord`` append events
through group commit, ``verify`` walks every stream's chain and checkpoints, ``query`` and
``export`` read them (JSON lines, RFC 5424 syslog, CEF), ``prune`` removes old records
behind a signed cut. Events are built with ``AuditEvent.request(...)`` and
``AuditEvent.admin(action, target, ...)``.
"""

from warden.audit.chain import GENESIS, AuditKeys, CheckpointKind
from warden.audit.events import AddressPolicy, AuditEvent, ClientAddresses, EventKind
from warden.audit.export import ExportFormat
from warden.audit.log import AuditLog, Durability
from warden.audit.query import AuditEntry, AuditFilter, Cursor, Page
from warden.audit.retention import PruneReport, StreamCut
from warden.audit.verify import Problem, ProblemKind, StreamReport, VerifyReport

__all__ = [
    "GENESIS",
    "AddressPolicy",
    "AuditEntry",
    "AuditEvent",
    "AuditFilter",
    "AuditKeys",
    "AuditLog",
    "CheckpointKind",
    "ClientAddresses",
    "Cursor",
    "Durability",
    "EventKind",
    "ExportFormat",
    "Page",
    "Problem",
    "ProblemKind",
    "PruneReport",
    "StreamCut",
    "StreamReport",
    "VerifyReport",
]
