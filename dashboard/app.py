"""The team leads' web app: server-rendered pages and the JSON API (FastAPI, Jinja2, uvicorn)."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from dashboard import access, digest, routes_week, views, week
from dashboard.rendering import templates_environment

HERE = Path(__file__).parent
# Stands for the CSRF token in a cached page's HTML; replaced by each request's own token.
CSRF_PLACEHOLDER = secrets.token_hex(32)
# A KR page keeps at most this many rendered variants (sorts and pages of its records) per
# store change, and this week's check-in form for at most this many (day, saved) pairs.
KR_PAGE_VARIANTS = 64
KR_PAGE_FORMS = 8
# Where the KR page's cached HTML takes the parts that depend on the clock (_kr_live.html):
# random per process (hex and letters, which escaping leaves alone), so no page content can
# contain them by chance.
_SLOT = secrets.token_hex(16)
KR_LIVE_MARKERS = {name: f"{_SLOT}{name}" for name in ("freshness", "check_in")}


# --- API models (the OpenAPI description other tools read) -------------------------------------


class CycleOut(BaseModel):
    cycle: str
    first_day: dt.date
    last_day: dt.date
    key_results: int


class KeyResultOut(BaseModel):
    cycle: str
    objective: str
    kr: str
    title: str
    team: str | None
    level: str
    ambition: str
    metric: str
    unit: str | None
    value: float | None
    baseline: float | None
    target: float | None
    progress: float | None
    grade: float | None
    expected_progress: float | None
    status: str
    sample_size: int
    as_of: dt.date
    data_synced_at: dt.datetime | None
    stale: bool
    stale_reasons: list[str]


class KpiOut(BaseModel):
    kpi: str
    title: str
    team: str | None
    metric: str
    value: float | None
    healthy_min: float | None
    healthy_max: float | None
    health: str
    sample_size: int
    as_of: dt.date
    data_synced_at: dt.datetime | None


class ProgressOut(BaseModel):
    cycle: str
    as_of: dt.date | None
    key_results: list[KeyResultOut]
    kpis: list[KpiOut]


class HistoryPoint(BaseModel):
    as_of: dt.date
    value: float | None
    status: str


class ForecastOut(BaseModel):
    projected_value: float
    projected_progress: float | None
    reaches_success: bool


class KeyResultDetailOut(BaseModel):
    key_result: KeyResultOut
    objective_title: str
    cycle_start: dt.date
    cycle_end: dt.date
    definition: dict[str, Any]
    history: list[HistoryPoint]
    expected: list[float | None]
    forecast: ForecastOut | None


class RecordsOut(BaseModel):
    available: bool
    as_of: dt.date
    entity: str | None
    total: int
    reason: str | None = None
    records: list[dict[str, Any]]


def _kr_out(kr: dict) -> KeyResultOut:
    return KeyResultOut.model_validate({k: kr[k] for k in KeyResultOut.model_fields})


def _kpi_out(kpi: dict) -> KpiOut:
    return KpiOut.model_validate({k: kpi[k] for k in KpiOut.model_fields})


# --- the app -----------------------------------------------------------------------------------


def create_app(data: views.DashboardData, policy: access.AccessPolicy) -> FastAPI:
    """The dashboard over `data`, every route but login and static assets behind `policy`."""
    app = FastAPI(
        title="krpulse dashboard API",
        version="1",
        description="KR progress, KPI values and the records behind each number, read-only.",
        # The interactive docs pages load their scripts from a CDN; the description is enough.
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    access.install(app, policy)
    environment = templates_environment()

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = environment.get_template(name).render(
            request=request,
            user=getattr(request.state, "user", None),
            login_enabled=policy.login_enabled,
            print_view=request.query_params.get("view") == "print",
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def not_found(request: Request, error: views.NotFound) -> HTMLResponse:
        return page(request, "empty.html", status_code=404, message=str(error))

    # Check-ins, the team's check-in form, alignment and the retrospective (dashboard/week.py).
    csrf = routes_week.add_routes(app, data, page)

    # --- pages -----------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(request: Request, cycle: str | None = None, team: str | None = None):
        try:
            model = week.cached_overview(data, cycle or None, team or None)
        except views.NotFound as error:
            return not_found(request, error)
        # The model is built once per store change; so is its HTML, per way of showing it.
        variant = (
            request.query_params.get("view") == "print",
            bool(policy.login_enabled and getattr(request.state, "user", None)),
        )
        rendered = model.setdefault("_html", {})
        if variant not in rendered:
            rendered[variant] = page(request, "overview.html", o=model).body
        return HTMLResponse(rendered[variant])

    # --- the KR page: HTML cached per store change, the clock's parts filled in per request ---

    live = environment.get_template("_kr_live.html").module
    html_lock = threading.Lock()

    def kr_body(stored: dict, variant: tuple) -> tuple[bytes, ...]:
        """The KR page's HTML for `variant` (print view, signed in, the records' sort, order and
        page) from the model as stored, cut at the live slots: (before the freshness, between,
        after the check-in form). Nothing in it depends on the clock or the visitor."""
        html = stored["html"].get(variant)
        if html is not None:
            return html
        print_view, signed_in, table = variant
        records = stored["records"]
        # The print view lists every stored record on its one page.
        per_page = len(records["records"]) if print_view else views.RECORDS_PER_PAGE
        shown = views.records_page(records, *table, per_page) if records["available"] else None
        text = environment.get_template("kr.html").render(
            user=signed_in or None,
            login_enabled=policy.login_enabled,
            print_view=print_view,
            d=stored["detail"],
            r=records,
            t=shown,
            cycles=stored["cycles"],
            c=stored["check_ins"],
            live=KR_LIVE_MARKERS,
        )
        parts = [text]
        for marker in KR_LIVE_MARKERS.values():
            cut = parts.pop().split(marker)
            if len(cut) != 2:
                raise RuntimeError(f"kr.html must show {marker} exactly once")
            parts += cut
        html = tuple(part.encode() for part in parts)
        rendered = stored["html"]
        with html_lock:
            while len(rendered) >= KR_PAGE_VARIANTS:
                rendered.pop(next(iter(rendered)))
            rendered[variant] = html
        return html

    def kr_form(stored: dict, today_model: dict, saved: bool) -> bytes:
        """This week's check-in form, kept per day (the week, whether the cycle still takes
        check-ins and this week's check-in follow from the day and the stored model), with
        the CSRF token's placeholder."""
        key = (today_model["check_ins"]["today"], saved)
        form = stored["forms"].get(key)
        if form is None:
            form = live.check_in_form(
                stored["detail"],
                stored["detail"]["kr"],
                today_model["check_ins"],
                CSRF_PLACEHOLDER,
                saved,
            ).encode()
            forms = stored["forms"]
            with html_lock:
                while len(forms) >= KR_PAGE_FORMS:
                    forms.pop(next(iter(forms)))
                forms[key] = form
        return form

    @functools.lru_cache(maxsize=256)
    def freshness(text: str, reasons: tuple[str, ...]) -> bytes:
        kr = {"freshness_text": text, "stale": bool(reasons), "stale_reasons": reasons}
        return str(live.freshness(kr)).encode()

    def default_variant(stored: dict) -> tuple:
        """How a KR page is shown unless asked otherwise: on screen, to a signed-in visitor when
        the dashboard has a login, the records in their default order, first page."""
        table = views.parse_record_view(stored["records"]["entity"], None, None, None)
        return (False, bool(policy.login_enabled), table)

    def warm_kr_html(stored: dict) -> None:
        """The default view's HTML and today's form of a KR page the warming built."""
        kr_body(stored, default_variant(stored))
        cycle = stored["detail"]["cycle"]
        today_model = {"check_ins": week.kr_check_ins_today(data, cycle, stored["check_ins"])}
        kr_form(stored, today_model, False)

    app.state.warm_kr_html = warm_kr_html  # what the warming renders (tests call it directly)

    @app.get("/kr/{cycle}/{kr}", response_class=HTMLResponse, include_in_schema=False)
    def kr_page(request: Request, cycle: str, kr: str):
        try:
            model = week.cached_kr_page(data, cycle, kr, render=warm_kr_html)
        except views.NotFound as error:
            return not_found(request, error)
        token, cookie = csrf.token(request)
        # The page's HTML is rendered once per store change and way of showing it (warmed for
        # the default view); what depends on the clock — the data's freshness and stale
        # reasons, this week's check-in form — goes into its slots per request, and each
        # visitor's CSRF token into the form.
        stored, params = model["stored"], request.query_params
        table = views.parse_record_view(
            stored["records"]["entity"], params.get("sort"), params.get("order"), params.get("page")
        )
        variant = (
            params.get("view") == "print",
            bool(policy.login_enabled and getattr(request.state, "user", None)),
            table,
        )
        before, between, after = kr_body(stored, variant)
        shown = model["detail"]["kr"]
        html = b"".join(
            (
                before,
                freshness(shown["freshness_text"], tuple(shown["stale_reasons"])),
                between,
                kr_form(stored, model, bool(params.get("saved"))).replace(
                    CSRF_PLACEHOLDER.encode(), token.encode()
                ),
                after,
            )
        )
        return csrf.set_cookie(request, HTMLResponse(html), cookie)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/"):  # noqa: A002 - the query parameter's name
        if not policy.login_enabled:
            return RedirectResponse("/", status_code=303)
        return page(request, "login.html", next=access.safe_next(next), label=policy.login_prompt)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        if not policy.login_enabled:
            return RedirectResponse("/", status_code=303)
        try:
            secret, target = await access.read_login_form(request)
            accepted = policy.check_secret(request, secret)
        except access.Refused as refused:
            return refused.response(request)
        if not accepted:
            return page(
                request,
                "login.html",
                status_code=401,
                next=target,
                label=policy.login_prompt,
                failed=True,
            )
        response = RedirectResponse(target, status_code=303)
        policy.start_session(request, response)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request):
        response = RedirectResponse("/login", status_code=303)
        policy.end_session(request, response)
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return PlainTextResponse("ok")

    # --- JSON API --------------------------------------------------------------------------

    def api(fn):  # noqa: ANN001, ANN202 - decorator
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except views.NotFound as error:
                raise HTTPException(status_code=404, detail=str(error)) from None

        return wrapper

    @app.get("/api/cycles", response_model=list[CycleOut], tags=["cycles"])
    @api
    def api_cycles():
        """Every cycle in the OKR store, newest data first."""
        return views.cycles(data)

    @app.get("/api/cycles/{cycle}/progress", response_model=ProgressOut, tags=["key results"])
    @api
    def api_progress(cycle: str, team: str | None = None):
        """Each KR's latest progress in the cycle (optionally one team's), and the KPIs."""
        model = views.overview(data, cycle, team)
        krs = [kr for t in model["teams"] for o in t["objectives"] for kr in o["key_results"]]
        return ProgressOut(
            cycle=model["cycle"],
            as_of=model["as_of"],
            key_results=[_kr_out(k) for k in krs],
            kpis=[_kpi_out(k) for k in model["kpis"]],
        )

    @app.get(
        "/api/cycles/{cycle}/key-results/{kr}",
        response_model=KeyResultDetailOut,
        tags=["key results"],
    )
    @api
    def api_kr(cycle: str, kr: str):
        """A KR's definition, daily history, expected path (one value per cycle day) and forecast."""
        detail = views.kr_detail(data, cycle, kr)
        forecast = detail["forecast"]
        return KeyResultDetailOut(
            key_result=_kr_out(detail["kr"]),
            objective_title=detail["objective_title"],
            cycle_start=detail["start"],
            cycle_end=detail["end"],
            definition=detail["definition"],
            history=[
                HistoryPoint(**{k: h[k] for k in ("as_of", "value", "status")})
                for h in detail["history"]
            ],
            expected=detail["chart"]["expected"],
            forecast=ForecastOut(**{k: forecast[k] for k in ForecastOut.model_fields})
            if forecast
            else None,
        )

    @app.get(
        "/api/cycles/{cycle}/key-results/{kr}/records",
        response_model=RecordsOut,
        tags=["key results"],
    )
    @api
    def api_records(cycle: str, kr: str, limit: int = Query(1000, ge=1, le=100_000)):
        """The staged deals or responses behind the KR's latest number, with CRM links."""
        return views.drilldown(data, cycle, kr, limit=limit, owner_names=week.owner_names(data))

    @app.get("/api/digest", tags=["digest"])
    @api
    def api_digest(team: str | None = None, week: dt.date | None = None) -> dict[str, Any]:
        """The weekly check-in for the week containing `week` (default: the newest week)."""
        return digest.build_digest(data, week=week, team=team).as_dict()

    return app
