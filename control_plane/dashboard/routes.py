"""The status page's routes: login/logout, the page and its live fragment, and operator actions.

Every POST needs the session's CSRF token and, but for the login, an operator; a viewer's page has
no action controls and the server refuses the action anyway. An action page always shows the dry
run first; the real failover or failback needs the site code typed again.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.silence_rules import Matcher
from control_plane.alerting.silences import create_silence
from control_plane.auth import web_sessions
from control_plane.auth.deps import Principal
from control_plane.dashboard import view
from control_plane.dashboard.i18n import LANG_COOKIE, LANGS, negotiate, translator
from control_plane.domain import Actor, Conflict, DomainError, NotFound
from control_plane.world.breaker_actions import find_breaker, override

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
SILENCE_HOURS = (1, 4, 24)
FLASH_COOKIE = "drctl_flash"
# no inline script or style, no framing (clickjacking an operator into a failover), forms only here
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)

router = APIRouter(include_in_schema=False)


class Refused(Exception):
    """An action the dashboard will not take; shown as a page with the status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status(exc: DomainError) -> int:
    return 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


def _login(request: Request) -> tuple[web_sessions.WebLogin, str] | None:
    cookie = request.cookies.get(web_sessions.COOKIE)
    if not cookie:
        return None
    ctx = _ctx(request)
    with ctx.sessions() as s:
        login = web_sessions.find_session(s, cookie, ctx.clock())
    return (login, cookie) if login else None


def _lang(request: Request) -> str:
    return negotiate(request.headers.get("accept-language"), request.cookies.get(LANG_COOKIE))


def _render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    lang = _lang(request)
    login = values.pop("login", None)
    cookie = values.pop("cookie", None)
    context = {
        "lang": lang, "langs": LANGS, "t": translator(lang), "login": login,
        "operator": bool(login) and Principal(login.name, login.role).at_least("operator"),
        "csrf": web_sessions.csrf_token(cookie) if cookie else "", **values,
    }  # fmt: skip
    resp = TEMPLATES.TemplateResponse(request, name, context, status_code=status)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _same_origin(request: Request) -> bool:
    """A browser names the page a POST comes from; one from another site is refused outright."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


def _operator(request: Request, csrf: str | None) -> tuple[web_sessions.WebLogin, str]:
    found = _login(request)
    if found is None:
        raise Refused(401, "log in first")
    login, cookie = found
    if not _same_origin(request) or not web_sessions.csrf_ok(cookie, csrf):
        raise Refused(403, "this form is stale or did not come from this page: reload and try again")
    if not Principal(login.name, login.role).at_least("operator"):
        raise Refused(403, "viewers cannot act: log in with an operator token")
    return login, cookie


def _refused_page(request: Request, exc: Refused) -> HTMLResponse:
    found = _login(request)
    login, cookie = found if found else (None, None)
    return _render(request, "message.html.j2", exc.status, login=login, cookie=cookie, message=str(exc))


def _done(message: str) -> RedirectResponse:
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(FLASH_COOKIE, message[:300], max_age=30, httponly=True, samesite="strict")
    return resp


def _session_cookie(request: Request, resp: Response, cookie: str, max_age: int) -> None:
    settings = _ctx(request).settings
    secure = settings.dashboard_secure_cookie or request.url.scheme == "https"
    resp.set_cookie(
        web_sessions.COOKIE,
        cookie,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


# --- login ---------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> Response:
    if _login(request):
        return RedirectResponse("/", status_code=303)
    return _render(request, "login.html.j2")


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=200)] = "") -> Response:
    if not _same_origin(request):
        return _render(request, "login.html.j2", 403, error="bad_token")
    ctx = _ctx(request)
    ttl = timedelta(hours=ctx.settings.dashboard_session_hours)
    with ctx.sessions.begin() as s:
        opened = web_sessions.open_session(s, token.strip(), ctx.clock(), ttl) if token.strip() else None
    if opened is None:
        return _render(request, "login.html.j2", 401, error="bad_token")
    resp = RedirectResponse("/", status_code=303)
    _session_cookie(request, resp, opened[0], int(ttl.total_seconds()))
    return resp


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    found = _login(request)
    if found is not None:
        if not web_sessions.csrf_ok(found[1], csrf):
            return _refused_page(request, Refused(403, "this form is stale: reload and try again"))
        ctx = _ctx(request)
        with ctx.sessions.begin() as s:
            web_sessions.end_session(s, found[1], ctx.clock())
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(web_sessions.COOKIE, path="/")
    return resp


@router.get("/ui/lang/{lang}")
def switch_language(lang: str, request: Request) -> Response:
    resp = RedirectResponse("/" if _login(request) else "/login", status_code=303)
    if lang in LANGS:
        resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return resp


# --- the page ----------------------------------------------------------------------------


def _board(request: Request, login: web_sessions.WebLogin) -> dict[str, Any]:
    ctx, state = _ctx(request), request.app.state
    drills = state.drills.list(None, None, view.DRILLS_SHOWN)
    with ctx.sessions() as s:
        return view.board(
            ctx, s, Principal(login.name, login.role), drills, state.dashboard_series, ctx.clock()
        )


@router.get("/")
def index(request: Request) -> Response:
    found = _login(request)
    if found is None:
        return RedirectResponse("/login", status_code=303)
    login, cookie = found
    resp = _render(
        request, "index.html.j2", login=login, cookie=cookie, board=_board(request, login),
        flash=request.cookies.get(FLASH_COOKIE), silence_hours=SILENCE_HOURS,
    )  # fmt: skip
    resp.delete_cookie(FLASH_COOKIE)
    return resp


@router.get("/ui/board")
def board_fragment(request: Request) -> Response:
    found = _login(request)
    if found is None:
        return Response(status_code=401)
    login, cookie = found
    return _render(
        request, "_board.html.j2", login=login, cookie=cookie, board=_board(request, login),
        silence_hours=SILENCE_HOURS,
    )  # fmt: skip


# --- actions -----------------------------------------------------------------------------


def _plan_page(
    request: Request, kind: str, code: str, status: int = 200, error: str | None = None
) -> Response:
    found = _login(request)
    if found is None:
        return RedirectResponse("/login", status_code=303)
    login, cookie = found
    if not Principal(login.name, login.role).at_least("operator"):
        return _refused_page(request, Refused(403, "viewers cannot act: log in with an operator token"))
    ops = request.app.state.operations
    actor = Actor(login.name)
    try:
        if kind == "failover":
            plan = ops.failover(actor, code, "dashboard dry run", None, dry_run=True, force=False)
        else:
            plan = ops.failback(actor, code, "dashboard dry run", dry_run=True, force=False)
    except DomainError as exc:
        return _refused_page(request, Refused(_status(exc), str(exc)))
    return _render(
        request, "plan.html.j2", status, login=login, cookie=cookie, kind=kind, site=code, plan=plan,
        refusing=[r for r in plan["rules"] if not r["ok"]], error=error,
    )  # fmt: skip


@router.get("/ui/sites/{code}/{kind}")
def plan_page(code: str, kind: str, request: Request) -> Response:
    if kind not in ("failover", "failback"):
        return _refused_page(request, Refused(404, f"no action {kind!r}"))
    return _plan_page(request, kind, code)


@router.post("/ui/sites/{code}/{kind}")
def site_action(
    code: str,
    kind: str,
    request: Request,
    csrf: Annotated[str, Form(max_length=100)] = "",
    confirm: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    force: Annotated[bool, Form()] = False,
    ramp_s: Annotated[float, Form(ge=0, le=86_400)] = 0,
) -> Response:
    try:
        if kind not in ("failover", "failback"):
            raise Refused(404, f"no action {kind!r}")
        login, _ = _operator(request, csrf)
    except Refused as exc:
        return _refused_page(request, exc)
    t = translator(_lang(request))
    if confirm.strip() != code:
        return _plan_page(request, kind, code, 400, t("code_mismatch", site=code))
    if len(reason.strip()) < 3:
        return _plan_page(request, kind, code, 400, t("reason"))
    ops, actor = request.app.state.operations, Actor(login.name)
    try:
        if kind == "failover":
            out = ops.failover(
                actor, code, reason.strip(), None, dry_run=False, force=force, trigger="dashboard"
            )
            return _done(t("done_failover", site=code, moved=out["plan"]["orders_to_move"]))
        ops.failback(actor, code, reason.strip(), dry_run=False, force=force, ramp_s=ramp_s)
        return _done(t("done_failback", site=code))
    except DomainError as exc:
        return _plan_page(request, kind, code, _status(exc), t("refused", detail=str(exc)))


@router.post("/ui/breakers/{name}/reset")
def reset_breaker(
    name: str,
    request: Request,
    csrf: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=500)] = "reset from the dashboard",
) -> Response:
    try:
        login, _ = _operator(request, csrf)
        ctx = _ctx(request)
        breaker = find_breaker(ctx, name)
    except Refused as exc:
        return _refused_page(request, exc)
    except DomainError as exc:
        return _refused_page(request, Refused(_status(exc), str(exc)))
    after = override(ctx.sessions, breaker, "reset", login.name, reason.strip() or "dashboard", ctx.clock())
    return _done(translator(_lang(request))("done_reset", name=name, state=after["state"]))


@router.post("/ui/alerts/{fingerprint}/silence")
def silence_alert(
    fingerprint: str,
    request: Request,
    csrf: Annotated[str, Form(max_length=100)] = "",
    hours: Annotated[int, Form()] = 1,
) -> Response:
    try:
        login, _ = _operator(request, csrf)
        if hours not in SILENCE_HOURS:
            raise Refused(400, f"silence for one of {', '.join(map(str, SILENCE_HOURS))} hours")
    except Refused as exc:
        return _refused_page(request, exc)
    ctx = _ctx(request)
    now = ctx.clock()
    with ctx.sessions.begin() as s:
        alert = alert_repo.get_alert(s, fingerprint)
        if alert is None:
            return _refused_page(request, Refused(404, f"no alert {fingerprint!r}"))
        matchers = [Matcher(k, v, False, True) for k, v in sorted(alert.labels.items())]
        until = now + timedelta(hours=hours)
        create_silence(s, login.name, matchers, now, until, f"silenced from the dashboard for {hours} h", now)
    t = translator(_lang(request))
    return _done(t("done_silence", alert=alert.alertname, until=until.strftime("%Y-%m-%d %H:%M UTC")))
