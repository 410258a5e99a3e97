"""Warden's domain errors, free of any transport.

Every error carries a stable machine-readable ``code``; front ends (HTTP, CLI)
map codes to status codes and exit codes in one place each.

::

    WardenError                    code
    ├── InvalidArgument            invalid_argument
    │   └── PolicyUnavailable      policy_unavailable (a dataset policy other than auto, not offered yet)
    ├── InvalidImage               invalid_image   (+ reason, see ImageErrorReason)
    ├── PayloadTooLarge            payload_too_large
    │   └── TooManyImages          too_many_images (more images in one request than it may carry)
    ├── AnswerTooLarge             answer_too_large (an answer past WARDEN_MAX_ANSWER_BYTES, refused unbuilt)
    ├── UnsupportedMediaType       unsupported_media_type
    │   └── UnsupportedDatasetFormat unsupported_dataset_format (a dataset format not stored yet: images, archives)
    ├── Unauthenticated            unauthenticated
    │   └── InvalidToken           invalid_token   (a JWT refused: size, signature, lifetime or a claim)
    ├── Forbidden                  forbidden
    │   ├── TenantNotServed        tenant_not_served (a replica dedicated to other tenants)
    │   ├── CsrfFailed             csrf_failed     (a console request without its session's CSRF token)
    │   └── SelfApproval           self_approval   (the principal that requested an approval may not decide it)
    ├── NotFound                   not_found
    │   ├── TenantNotFound         tenant_not_found
    │   ├── KeyNotFound            key_not_found
    │   ├── ModelNotFound          model_not_found
    │   ├── ObjectErased           object_erased   (an object of the vault whose key was destroyed)
    │   ├── DatasetNotFound        dataset_not_found (no dataset, or version, of that name among the caller's)
    │   └── ApprovalNotFound       approval_not_found
    ├── Conflict                   conflict
    │   ├── ApprovalNotPending     approval_not_pending  (approve, reject or withdraw a request no longer pending)
    │   └── ApprovalNotApproved    approval_not_approved (revoke a request that was never approved)
    ├── StorageCorrupt             storage_corrupt
    ├── AuditUnsealed              audit_unsealed  (an audit stream's tail has no clean-close checkpoint)
    ├── AuditResumed               audit_resumed   (an audit stream was taken over after a writer that did not close)
    ├── SecretMismatch             secret_mismatch (a replica's server secret differs from the others')
    ├── DeliveryFailed             delivery_failed (audit shipping)
    ├── UnsupportedFile            unsupported_file (a file of no kind the command reads)
    ├── DeidError                  deid_error      (de-identification)
    │   ├── InvalidPolicy          invalid_policy  (+ where: the policy field at fault)
    │   ├── KeyRequired            key_required
    │   └── EngineUnavailable      engine_unavailable
    ├── ApprovalRefused            approval_refused (+ reason, see ApprovalRefusal)
    ├── SandboxUnavailable         sandbox_unavailable
    ├── StagingUnavailable         staging_unavailable (WARDEN_STAGING_DIR is missing or not a tmpfs)
    ├── ImageRefused               image_refused   (not pinned by digest, or not on the allow-list)
    ├── Refused                    (admission; carries retry_after seconds)
    │   ├── RateLimited            rate_limited
    │   ├── QuotaExceeded          quota_exceeded
    │   │   └── StorageQuotaExceeded storage_quota_exceeded (a tenant's stored datasets past WARDEN_DATASET_QUOTA_BYTES)
    │   ├── OverCapacity           over_capacity
    │   └── AuditUnavailable       audit_unavailable
    ├── HeadersTooLarge            headers_too_large (a request head over its byte or header-count limit)
    ├── RequestTimeout             request_timeout (a request head or body that arrived too slowly)
    ├── DeadlineExceeded           deadline_exceeded (+ stage: queue or inference; cause: deadline or run_cap)
    ├── ClientDisconnected         client_closed_request (+ stage)
    └── ModelError                 model_error
        ├── InvalidModel           invalid_model
        ├── UnsupportedModel       unsupported_model
        │   └── ModelTooSlow       model_too_slow  (a run measured at upload took longer than WARDEN_MAX_RUN_MS)
        └── DeviceUnavailable      device_unavailable
"""

from __future__ import annotations

from enum import StrEnum


class WardenError(Exception):
    """Base of every error Warden raises on purpose; ``code`` is stable across releases."""

    code: str = "warden_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle by state, not by constructor arguments, so that errors with other signatures cross processes."""
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[WardenError], args: tuple[object, ...], state: dict[str, object]) -> WardenError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidArgument(WardenError):
    """A caller passed a value outside its documented range (a threshold, a size, a device name)."""

    code = "invalid_argument"


class ImageErrorReason(StrEnum):
    """Why an image was refused; the values are stable and appear in API answers."""

    EMPTY = "empty"
    TOO_MANY_BYTES = "too_many_bytes"
    TOO_MANY_PIXELS = "too_many_pixels"
    UNKNOWN_FORMAT = "unknown_format"
    UNSUPPORTED_FORMAT = "unsupported_format"
    ANIMATED = "animated"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    ZERO_SIZE = "zero_size"
    UNSUPPORTED_MODE = "unsupported_mode"
    UNSUPPORTED_INPUT = "unsupported_input"


class InvalidImage(WardenError):
    """An image could not be decoded safely; ``reason`` says which check refused it."""

    code = "invalid_image"

    def __init__(self, reason: ImageErrorReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


class PayloadTooLarge(WardenError):
    """A request body or upload is larger than its configured limit."""

    code = "payload_too_large"


class TooManyImages(PayloadTooLarge):
    """A request carries more images than one request may (``WARDEN_MAX_IMAGES_PER_REQUEST``, or the tenant's burst)."""

    code = "too_many_images"


class AnswerTooLarge(WardenError):
    """An answer would be larger than ``WARDEN_MAX_ANSWER_BYTES`` (huge class names, many detections)."""

    code = "answer_too_large"


class UnsupportedMediaType(WardenError):
    """A request body's content type is not one the route accepts."""

    code = "unsupported_media_type"


class Unauthenticated(WardenError):
    """No credential, or one that is malformed, unknown, revoked, expired or forged."""

    code = "unauthenticated"


class InvalidToken(Unauthenticated):
    """A JWT bearer token was refused: its size, signature, lifetime or a claim of any type or size.

    ``subject`` is what the audit record may keep of the token's ``sub``: ``None`` unless the
    signature verified, and then the subject as ``jwt:<sub>`` when it is well formed, else a
    short digest of it (a long or key-shaped subject is never kept verbatim).
    """

    code = "invalid_token"

    def __init__(self, message: str, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class Forbidden(WardenError):
    """A valid credential that may not do this (wrong scope, suspended tenant)."""

    code = "forbidden"


class TenantNotServed(Forbidden):
    """The caller's tenant is served by other replicas (``WARDEN_SERVE_TENANTS`` does not name it)."""

    code = "tenant_not_served"


class CsrfFailed(Forbidden):
    """A state-changing request authenticated by a console session cookie lacks the session's CSRF token."""

    code = "csrf_failed"


class SelfApproval(Forbidden):
    """The principal that requested an approval tried to decide it (the same key id, or the same JWT subject).

    Separation of duties: whoever asks to process data is never the one who allows it.
    """

    code = "self_approval"


class NotFound(WardenError):
    """A named thing does not exist for the caller (which says nothing of other tenants)."""

    code = "not_found"


class TenantNotFound(NotFound):
    """No tenant of that name."""

    code = "tenant_not_found"


class KeyNotFound(NotFound):
    """No API key with that id."""

    code = "key_not_found"


class ModelNotFound(NotFound):
    """No model (or version) of that name among the caller's own."""

    code = "model_not_found"


class ObjectErased(NotFound):
    """The object was erased: its data key is destroyed, so no copy of its bytes can be decrypted."""

    code = "object_erased"


class ApprovalNotFound(NotFound):
    """No data-processing approval with that id."""

    code = "approval_not_found"


class Conflict(WardenError):
    """The thing to create exists already, or the change contradicts the current state."""

    code = "conflict"


class ApprovalNotPending(Conflict):
    """A request no longer pending (decided, withdrawn or expired) cannot be approved, rejected or withdrawn."""

    code = "approval_not_pending"


class ApprovalNotApproved(Conflict):
    """An approval request that was never approved (pending, rejected or withdrawn) cannot be revoked."""

    code = "approval_not_approved"


class StorageCorrupt(WardenError):
    """Stored state failed an integrity check (a blob whose bytes no longer match its digest)."""

    code = "storage_corrupt"


class AuditUnsealed(WardenError):
    """An audit stream intact so far whose tail no clean-close checkpoint covers (a crash, or a writer still running).

    Records after the stream's last signed checkpoint are then protected by the chain alone:
    removing them would not be detected.
    """

    code = "audit_unsealed"


class AuditResumed(WardenError):
    """An audit stream records a restart after a writer that did not close: a crash, sealed over since or not.

    The records after the crash's last signed checkpoint were never signed; a deletion
    before the restart cannot be excluded.
    """

    code = "audit_resumed"


class SecretMismatch(WardenError):
    """This process's server secret is not the one the shared database was first used with.

    Replicas sharing a database must share ``WARDEN_SECRET_KEY``: API-key hashes and audit
    checkpoints are keyed with it, so a replica with another secret would refuse every key.
    """

    code = "secret_mismatch"


class DeliveryFailed(WardenError):
    """A batch of audit records could not be delivered to a shipping target (connection, TLS, timeout, file)."""

    code = "delivery_failed"


class DeidError(WardenError):
    """De-identification could not proceed; nothing partial is left where the output was asked for."""

    code = "deid_error"


class InvalidPolicy(DeidError):
    """A de-identification policy names an unknown column, operator or option, or a value out of range."""

    code = "invalid_policy"

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


class KeyRequired(DeidError):
    """An operator that needs key material (hash, encrypt, date_shift) was asked for without a usable key."""

    code = "key_required"


class UnsupportedFile(WardenError):
    """A file's format is not one the command reads (de-identification, policy checks), or it does not parse as it."""

    code = "unsupported_file"


class EngineUnavailable(DeidError):
    """A detector the run needs (the NER pipeline, a face model) is not installed; nothing is silently skipped."""

    code = "engine_unavailable"


class ApprovalRefusal(StrEnum):
    """Why a job was not admitted under an approval; the values are stable and appear in audit records."""

    NOT_FOUND = "not_found"
    NOT_APPROVED = "not_approved"
    REVOKED = "revoked"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    INPUT_NOT_APPROVED = "input_not_approved"
    IDENTIFIERS_FOUND = "identifiers_found"
    INPUT_UNREADABLE = "input_unreadable"


class ApprovalRefused(WardenError):
    """A job may not start under the approval it names; ``reason`` says which check refused it."""

    code = "approval_refused"

    def __init__(self, reason: ApprovalRefusal, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


class SandboxUnavailable(WardenError):
    """The job sandbox cannot run here (bwrap missing, user namespaces disabled, libseccomp missing)."""

    code = "sandbox_unavailable"


class ImageRefused(WardenError):
    """A job image that is not pinned by digest (``name@sha256:…``), or not on the configured allow-list."""

    code = "image_refused"


class Refused(WardenError):
    """Admission refused the request before any work; ``retry_after`` says when trying again makes sense."""

    code = "refused"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Refused):
    """The tenant is over its request rate."""

    code = "rate_limited"


class QuotaExceeded(Refused):
    """The tenant has used its daily requests."""

    code = "quota_exceeded"


class OverCapacity(Refused):
    """The tenant's queue is full."""

    code = "over_capacity"


class AuditUnavailable(Refused):
    """The audit store cannot make records durable; work is refused rather than served unrecorded (fail closed)."""

    code = "audit_unavailable"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after)


class HeadersTooLarge(WardenError):
    """A request head (request line and headers) over its byte limit, or with more headers than allowed."""

    code = "headers_too_large"


class RequestTimeout(WardenError):
    """A client sent its request head, or its body, too slowly; the connection is closed to free it."""

    code = "request_timeout"


class DeadlineExceeded(WardenError):
    """A request ran out of time: its deadline passed, or its model's run passed the version's run-time cap.

    ``stage`` says where it was cut (``queue``: never run; ``inference``: its run was stopped); ``cause``
    whether by the request's deadline or by the run-time cap (``run_cap``).
    """

    code = "deadline_exceeded"

    def __init__(self, message: str, *, stage: str = "queue", cause: str = "deadline") -> None:
        super().__init__(message)
        self.stage = stage
        self.cause = cause


class ClientDisconnected(WardenError):
    """The client went away before its answer was ready; its queued or running work was stopped.

    ``stage`` says where the request was when it was given up (``queue``, ``inference``, …).
    """

    code = "client_closed_request"

    def __init__(self, message: str, *, stage: str = "queue") -> None:
        super().__init__(message)
        self.stage = stage


class ModelError(WardenError):
    """A model file could not be used for detection."""

    code = "model_error"


class InvalidModel(ModelError):
    """The file is not a loadable ONNX model (missing, corrupt, or refused by ONNX Runtime)."""

    code = "invalid_model"


class UnsupportedModel(ModelError):
    """The model loads but is not a detection model Warden understands (task, layout, inputs)."""

    code = "unsupported_model"


class ModelTooSlow(UnsupportedModel):
    """A run measured at upload (black, white, noise or a photo) took longer than the server lets any run take."""

    code = "model_too_slow"


class DeviceUnavailable(ModelError):
    """The requested execution device has no ONNX Runtime provider installed on this machine."""

    code = "device_unavailable"


# --- datasets (warden.datasets) ---


class PolicyUnavailable(InvalidArgument):
    """A dataset push named a de-identification policy other than ``auto`` (named policies are not offered yet)."""

    code = "policy_unavailable"


class UnsupportedDatasetFormat(UnsupportedMediaType):
    """A dataset push named a format Warden does not store (yet): CSV, JSON Lines, Parquet and text are."""

    code = "unsupported_dataset_format"


class DatasetNotFound(NotFound):
    """No dataset, or no version, of that name among the caller's own (another tenant's answers the same)."""

    code = "dataset_not_found"


class StagingUnavailable(WardenError):
    """The staging folder for de-identification is missing or not on a memory filesystem (tmpfs).

    Uploads are staged there in clear while they are de-identified; on a disk they could outlive the
    push, so the push is refused instead (set ``WARDEN_STAGING_DIR`` to a tmpfs mount).
    """

    code = "staging_unavailable"


class StorageQuotaExceeded(QuotaExceeded):
    """The tenant's stored datasets would pass ``WARDEN_DATASET_QUOTA_BYTES``; erase versions to make room."""

    code = "storage_quota_exceeded"
