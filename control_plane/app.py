"""App wiring: `create_app(settings)` builds the FastAPI app and everything it owns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from control_plane.alerting import endpoints as alerting
from control_plane.auth.deps import TokenCache
from control_plane.background import BackgroundLoop
from control_plane.bia_runs import endpoints as bia
from control_plane.bia_runs.jobs import BiaSchedule
from control_plane.context import AppContext, build_context, utcnow
from control_plane.dashboard import routes as dashboard
from control_plane.dashboard.view import SeriesCache
from control_plane.drills import endpoints as drills
from control_plane.drills.calendar import EMPTY, load_calendar
from control_plane.drills.service import DrillService
from control_plane.logs import configure_logging
from control_plane.metrics import mark_this_process_dead
from control_plane.monitoring import endpoints as monitoring
from control_plane.monitoring.scheduler import LeaderJob
from control_plane.notices import endpoints as notices
from control_plane.operations import endpoints as operations
from control_plane.operations.auto_failover import AutoFailover
from control_plane.operations.expiry import FailoverExpiry
from control_plane.operations.moves import MoveConfig, SiteMover
from control_plane.operations.service import SiteOperations
from control_plane.orders import endpoints as orders
from control_plane.orders import lifecycle_endpoints, reconcile_endpoints
from control_plane.runbook_runs import endpoints as runbook_endpoints
from control_plane.runbook_runs.library import SHIPPED as SHIPPED_RUNBOOKS
from control_plane.runbook_runs.library import RunbookLibrary
from control_plane.runbook_runs.service import RunbookService
from control_plane.schedule import build_prober, build_scheduler
from control_plane.settings import Settings
from control_plane.web import openapi, problems
from control_plane.web.body_limit import BodyLimitMiddleware
from control_plane.web.url_guard import UrlGuardMiddleware
from control_plane.world import endpoints as sites
from failover.rate import RateLimiter
from failover.safety import SafetyPolicy


def create_app(
    settings: Settings | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    settings = settings or Settings()
    ctx = build_context(settings, registry, clock)
    site_ops = SiteOperations(
        ctx,
        SafetyPolicy(
            min_accepting_sites=settings.safety_min_accepting_sites,
            capacity_margin=settings.safety_capacity_margin,
            health_required_for_failback=settings.safety_health_required_for_failback,
            target_stock=settings.safety_target_stock,
        ),
        SiteMover(
            ctx.sessions,
            ctx.sites,
            ctx.board,
            ctx.client,
            ctx.pipeline,
            ctx.eta,
            MoveConfig(parallelism=settings.move_parallelism, settle_s=settings.cancel_settle_s),
            clock,
        ),
    )
    auto = AutoFailover(
        settings.auto_failover,
        settings.auto_failover_after_s,
        ctx.sites,
        ctx.board,
        site_ops,
        ctx.sessions,
        clock,
    )
    # a runbook that cannot be read stops the start, like a bad calendar: not at 3 a.m. when it fires
    library = RunbookLibrary.load(settings.runbook_dir or SHIPPED_RUNBOOKS)
    runbooks = RunbookService(
        ctx,
        site_ops,
        library,
        settings.runbook_approver_must_differ,
        settings.runbook_auto_start,
        settings.runbook_lease_s,
    )
    expiry = FailoverExpiry(
        site_ops, ctx.sessions, clock, settings.failover_expiry_policy, settings.failover_expiry_ramp_s
    )
    bia_schedule = BiaSchedule(
        ctx.bia, ctx.sessions, clock, settings.bia_schedule_s, settings.bia_schedule_days
    )
    prober = build_prober(ctx)
    scheduler = build_scheduler(
        ctx,
        prober,
        [
            LeaderJob("runbooks", runbooks.advance_all, settings.runbook_tick_s),
            LeaderJob("failover-expiry", expiry.check, 1.0),
            *([LeaderJob("bia-schedule", bia_schedule.check, 60.0)] if settings.bia_schedule_s > 0 else []),
        ],
        runbooks.on_alert,
    )
    loop = BackgroundLoop(ctx, prober, extra_jobs=[auto.check])

    # a process without background jobs never leads either (in-process tests, read-only replicas)
    leads = settings.background_jobs and settings.scheduler

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.background_jobs:
            loop.start()
        if leads:
            scheduler.start()
        try:
            yield
        finally:
            if leads:
                scheduler.stop()
            if settings.background_jobs:
                loop.stop()
            ctx.close()
            mark_this_process_dead()

    app = FastAPI(
        title="drctl control plane",
        version="0.1.0",
        description="Routes orders to DCs through circuit breakers, reroutes on failure, loses nothing.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.background = loop
    app.state.scheduler = scheduler
    app.state.token_cache = TokenCache()
    app.state.auth_failures = RateLimiter(
        lambda _: settings.auth_failures_per_s, burst=settings.auth_failure_burst, max_keys=10_000
    )
    app.state.operations = site_ops
    app.state.failover_expiry = expiry
    app.state.bia_schedule = bia_schedule
    app.state.runbooks = runbooks
    app.state.alert_hook = runbooks.on_alert
    # a calendar that cannot be read stops the start: a typo must not quietly allow drills at peak
    calendar = load_calendar(settings.commerce_calendar) if settings.commerce_calendar else EMPTY
    app.state.drills = DrillService(ctx.sessions, clock, calendar, settings.drill_heartbeat_timeout_s)
    problems.install(app)
    openapi.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(UrlGuardMiddleware)
    app.include_router(orders.router)
    app.include_router(lifecycle_endpoints.router)
    app.include_router(reconcile_endpoints.router)
    app.include_router(runbook_endpoints.router)
    app.include_router(sites.router)
    app.include_router(bia.router)
    app.include_router(operations.router)
    app.include_router(monitoring.router)
    app.include_router(alerting.router)
    app.include_router(notices.router)
    app.include_router(drills.router)
    app.state.dashboard_series = SeriesCache()
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(packages=[("control_plane.dashboard", "static")]), name="static")
    _ops_routes(app, ctx)
    return app


def _ops_routes(app: FastAPI, ctx: AppContext) -> None:
    # served at the exact path: a mounted ASGI sub-app would redirect /metrics -> /metrics/ (DESIGN §12)
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        try:
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready", "database": "ok"})


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: settings from DRCTL_* variables."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
