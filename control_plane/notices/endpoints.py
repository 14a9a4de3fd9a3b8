"""`/v1/notices`: the delay notices customers were (or will be) sent, and a preview of one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from control_plane.auth.deps import Ctx, Operator, SessionDep, Viewer
from control_plane.domain import NotFound
from control_plane.notices import repository as repo
from control_plane.notices import service
from control_plane.notices.schemas import EmailOut, NoticeOut, PreviewOut, SmsOut
from control_plane.store.tables import NoticeLetterRow, NoticeRow
from control_plane.web.params import RowId
from control_plane.web.strict_query import known_query

router = APIRouter(prefix="/v1/notices", tags=["notices"])
Status = Literal["pending", "sent", "failed", "suppressed"]


def notice_out(row: NoticeRow, letter: NoticeLetterRow | None) -> NoticeOut:
    return NoticeOut(
        id=row.id,
        order_id=row.order_id,
        incident_id=row.incident_id,
        kind=row.kind,
        channel=row.channel,
        sent_via=letter.sent_via if letter else None,
        locale=row.locale,
        status=row.status,
        reason=row.reason,
        attempts=row.attempts,
        provider_id=row.provider_id,
        detail=letter.detail if letter else None,
        letter_id=row.letter_id,
        promised_by=row.promised_by,
        eta=row.eta,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


@router.get("", dependencies=[Depends(known_query("order", "incident", "status", "limit"))])
def list_notices(
    session: SessionDep,
    _: Viewer,
    order: Annotated[str | None, Query(max_length=36)] = None,
    incident: Annotated[int | None, Query(ge=1)] = None,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[NoticeOut]:
    rows = repo.list_notices(session, order, incident, status, limit)
    letters = repo.letters_by_id(session, {r.letter_id for r in rows})
    return [notice_out(r, letters.get(r.letter_id)) for r in rows]


@router.get("/preview", dependencies=[Depends(known_query("order"))])
def preview(
    order: Annotated[str, Query(max_length=36)], session: SessionDep, ctx: Ctx, _: Operator
) -> PreviewOut:
    p = service.preview(session, ctx.notice_policy, order, ctx.clock())
    return PreviewOut(
        order_id=p.order_id,
        channel=p.channel,
        locale=p.locale,
        late=p.late,
        email=EmailOut(subject=p.email.subject, text=p.email.text, html=p.email.html),
        sms=SmsOut(text=p.sms.text, kind=p.sms.kind, size_bytes=p.sms.size_bytes),
    )


@router.get("/{notice_id}")
def get_notice(notice_id: RowId, session: SessionDep, _: Viewer) -> NoticeOut:
    found = repo.get_notice(session, notice_id)
    if found is None:
        raise NotFound(f"no notice {notice_id}")
    return notice_out(*found)
