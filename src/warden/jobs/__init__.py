"""Hardened training jobs on personal data, and what admits them.

- :mod:`warden.jobs.approvals`: approvals, a declared purpose over datasets named by content
  hash, with an expiry, a run budget and revocation (:class:`~warden.jobs.approvals.ApprovalService`).
- :mod:`warden.jobs.approval_requests`: tenants' requests and their decisions by someone other
  than the requester (:class:`~warden.jobs.approval_requests.ApprovalDesk`).
- :mod:`warden.jobs.admission`: the checks ``warden job run`` makes before starting anything
  (:func:`~warden.jobs.admission.admit`).

Light on import: this package imports nothing, so the sandbox backends load without the
database layer, and the de-identification scan loads only when admission runs it.
"""
