"""Approval requests (``/v1/approvals``) and their decisions (``/admin/approvals``), with separation of duties.

A tenant's ``admin`` or ``train`` key requests an approval and sees its tenant's requests; an
``approve`` key (of the tenant, or operator-wide) reads the inbox and approves, rejects or revokes;
an operator's admin key reads and revokes but never decides. The principal that requested an
approval can never decide it (403 ``self_approval``). Another tenant's approval answers exactly
like a missing one (404 ``approval_not_found``). A change the request's state does not allow is
409 (``approval_not_pending``, ``approval_not_approved``). Every transition is an audited action
(``approval.request``, ``.withdraw``, ``.approve``, ``.reject``, ``.revoke``) whose record names
the acting key id (or ``jwt:<sub>``), the reason and the state it led to. The rules themselves
live in :mod:`warden.jobs.approval_requests`; this module only adapts them to HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from warden.api.audit import RequestFacts, facts
from warden.api.auth import Approver, Overseer, Requester, approver_caller, overseer_caller, requester_caller
from warden.api.json_body import json_body, json_request_body
from warden.api.schemas import ApprovalIn, ApprovalOut, DecisionIn, HashedDatasetOut, error_responses
from warden.jobs.approval_requests import ApprovalDesk, request_terms
from warden.jobs.approvals import ApprovalState, ApprovalView
from warden.services import Services

router = APIRouter(tags=["approvals"])
RequestBody = Annotated[ApprovalIn, Depends(json_body(ApprovalIn, requester_caller))]
DecisionBody = Annotated[DecisionIn, Depends(json_body(DecisionIn, approver_caller))]
RevokeBody = Annotated[DecisionIn, Depends(json_body(DecisionIn, overseer_caller))]
StateFilter = Annotated[ApprovalState | None, Query(description="Only approvals in this state (pending: the inbox).")]


def _desk(request: Request) -> ApprovalDesk:
    services: Services = request.app.state.services
    return ApprovalDesk(services.approvals)


def _act(request: Request, action: str, target: str | None, **details: str | int | float | None) -> RequestFacts:
    """Name the transition for the request's audit record (the actor is the record's key id)."""
    noted = facts(request)
    noted.action, noted.target = action, target
    noted.details.update(details)
    return noted


def _noted(noted: RequestFacts, view: ApprovalView, now: datetime) -> ApprovalOut:
    """Add what the transition led to to the audit record, and answer the approval."""
    noted.target = view.id
    noted.details.update(state=view.state(now).value, approval_tenant=view.tenant, requested_by=view.requested_by)
    return approval_out(view, now)


def approval_out(view: ApprovalView, now: datetime) -> ApprovalOut:
    """An approval as the API answers it, with its state at ``now``."""
    return ApprovalOut(
        id=view.id,
        tenant=view.tenant,
        state=view.state(now),
        purpose=view.purpose,
        datasets=[str(d) for d in view.dataset_refs],
        hashed_datasets=[HashedDatasetOut(path=d.path, sha256=d.sha256) for d in view.datasets],
        max_runs=view.max_runs,
        runs_used=view.runs_used,
        expires_at=_iso(view.expires_at),
        runtimes=list(view.runtimes) if view.runtimes is not None else None,
        max_gpus=view.max_gpus,
        allow_identifiers=view.allow_identifiers,
        requested_at=view.created_at.isoformat(),
        requested_by=view.requested_by,
        requested_by_kind=view.requested_by_kind,
        decided_by=view.decided_by,
        decided_at=_iso(view.decided_at),
        reason=view.reason,
        revoked_at=_iso(view.revoked_at),
        revoked_by=view.revoked_by,
        revoke_reason=view.revoke_reason,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@router.post(
    "/v1/approvals",
    status_code=201,
    response_model=ApprovalOut,
    summary="Request an approval",
    responses=error_responses(400, 401, 403, 413),
    openapi_extra=json_request_body(ApprovalIn),
)
async def request_approval(body: RequestBody, request: Request, caller: Requester) -> ApprovalOut:
    """Ask for an approval for the caller's tenant (``admin`` or ``train`` key); it is ``pending`` until an
    approver who is not the caller decides it."""
    noted = _act(
        request,
        "approval.request",
        None,
        purpose=body.purpose,
        datasets=",".join(body.datasets),
        dataset_count=len(body.datasets),
        max_runs=body.max_runs,
        expires=body.expires,
        runtimes=",".join(body.runtimes) if body.runtimes is not None else None,
        max_gpus=body.max_gpus,
        allow_identifiers=body.allow_identifiers,
    )
    desk = _desk(request)
    now = desk.now()
    terms = request_terms(
        now,
        purpose=body.purpose,
        datasets=body.datasets,
        max_runs=body.max_runs,
        expires=body.expires,
        runtimes=body.runtimes,
        max_gpus=body.max_gpus,
        allow_identifiers=body.allow_identifiers,
    )
    view = await run_in_threadpool(desk.submit, caller, terms)
    noted.details["expires_at"] = _iso(view.expires_at)
    return _noted(noted, view, now)


@router.get(
    "/v1/approvals",
    response_model=list[ApprovalOut],
    summary="List the tenant's approval requests",
    responses=error_responses(400, 401, 403),
)
async def list_requests(request: Request, caller: Requester, state: StateFilter = None) -> list[ApprovalOut]:
    """The caller's tenant's requests and approvals, oldest first."""
    desk = _desk(request)
    now = desk.now()
    return [approval_out(v, now) for v in await run_in_threadpool(desk.mine, caller, state)]


@router.get(
    "/v1/approvals/{approval_id}",
    response_model=ApprovalOut,
    summary="Show one of the tenant's approval requests",
    responses=error_responses(401, 403, 404),
)
async def show_request(approval_id: str, request: Request, caller: Requester) -> ApprovalOut:
    """Another tenant's approval answers exactly like a missing one."""
    desk = _desk(request)
    return approval_out(await run_in_threadpool(desk.show_mine, caller, approval_id), desk.now())


@router.post(
    "/v1/approvals/{approval_id}/withdraw",
    response_model=ApprovalOut,
    summary="Withdraw a pending approval request",
    responses=error_responses(401, 403, 404, 409),
)
async def withdraw_request(approval_id: str, request: Request, caller: Requester) -> ApprovalOut:
    """Only while it is pending; by any of the tenant's admin or train keys."""
    noted = _act(request, "approval.withdraw", approval_id)
    desk = _desk(request)
    view = await run_in_threadpool(desk.withdraw, caller, approval_id)
    return _noted(noted, view, desk.now())


@router.get(
    "/admin/approvals",
    response_model=list[ApprovalOut],
    summary="The approver's inbox",
    responses=error_responses(400, 401, 403),
)
async def inbox(request: Request, caller: Overseer, state: StateFilter = None) -> list[ApprovalOut]:
    """The approvals an approver decides (its tenant's, or every tenant's and the host's for an operator-wide
    approver or an operator), oldest first; ``?state=pending`` is what awaits a decision."""
    desk = _desk(request)
    now = desk.now()
    return [approval_out(v, now) for v in await run_in_threadpool(desk.inbox, caller, state)]


@router.get(
    "/admin/approvals/{approval_id}",
    response_model=ApprovalOut,
    summary="Show an approval request to its approver",
    responses=error_responses(401, 403, 404),
)
async def show_approval(approval_id: str, request: Request, caller: Overseer) -> ApprovalOut:
    """Another tenant's approval answers a tenant's approver exactly like a missing one."""
    desk = _desk(request)
    return approval_out(await run_in_threadpool(desk.show, caller, approval_id), desk.now())


@router.post(
    "/admin/approvals/{approval_id}/approve",
    response_model=ApprovalOut,
    summary="Approve a pending request",
    responses=error_responses(400, 401, 403, 404, 409, 413),
    openapi_extra=json_request_body(DecisionIn),
)
async def approve(approval_id: str, body: DecisionBody, request: Request, caller: Approver) -> ApprovalOut:
    """An ``approve`` key's decision (the reason is optional); never the requester's own (403 self_approval)."""
    noted = _act(request, "approval.approve", approval_id, reason=body.reason)
    desk = _desk(request)
    view = await run_in_threadpool(desk.approve, caller, approval_id, body.reason)
    return _noted(noted, view, desk.now())


@router.post(
    "/admin/approvals/{approval_id}/reject",
    response_model=ApprovalOut,
    summary="Reject a pending request",
    responses=error_responses(400, 401, 403, 404, 409, 413),
    openapi_extra=json_request_body(DecisionIn),
)
async def reject(approval_id: str, body: DecisionBody, request: Request, caller: Approver) -> ApprovalOut:
    """An ``approve`` key's decision, with a reason (required); never the requester's own."""
    noted = _act(request, "approval.reject", approval_id, reason=body.reason)
    desk = _desk(request)
    view = await run_in_threadpool(desk.reject, caller, approval_id, body.reason or "")
    return _noted(noted, view, desk.now())


@router.post(
    "/admin/approvals/{approval_id}/revoke",
    response_model=ApprovalOut,
    summary="Revoke an approval",
    responses=error_responses(400, 401, 403, 404, 409, 413),
    openapi_extra=json_request_body(DecisionIn),
)
async def revoke(approval_id: str, body: RevokeBody, request: Request, caller: Overseer) -> ApprovalOut:
    """An approved approval admits no job from now on (revoking a revoked one answers it unchanged); by an
    ``approve`` key or an operator's admin key."""
    noted = _act(request, "approval.revoke", approval_id, reason=body.reason)
    desk = _desk(request)
    view = await run_in_threadpool(desk.revoke, caller, approval_id, body.reason)
    return _noted(noted, view, desk.now())
