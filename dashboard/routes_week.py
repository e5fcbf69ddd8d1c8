"""Routes of the team's week: check in (a KR, a whole team), alignment, retrospective, their API."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from core.checkins import NOTE_FIELDS, CheckInError, make_check_in, make_retro_item
from dashboard import forms, views, week
from dashboard.access import Refused

MAX_JSON_BODY = 64 * 1024


class CheckInOut(BaseModel):
    cycle: str
    kr: str
    week: dt.date
    week_label: str
    team: str | None = None
    confidence: int
    confidence_text: str
    progress: str
    problems: str
    next_steps: str
    value: float | None
    value_as_of: dt.date | None
    author: str | None
    revision: int


class CheckInIn(BaseModel):
    confidence: int | str
    progress: str = ""
    problems: str = ""
    next_steps: str = ""


class RetroItemOut(BaseModel):
    text: str
    benefit: int
    effort: int
    author: str
    quick_win: bool


def _author(request: Request) -> str:
    return str(getattr(request.state, "user", None) or "local")


def _save(data: views.DashboardData, request: Request, cycle: str, kr: str, fields: dict) -> dict:
    today = week.org_today(data)
    dates = views.cycle_dates(data, cycle)
    check_in = make_check_in(
        cycle=cycle,
        kr=kr,
        day=today,
        today=today,
        author=_author(request),
        cycle_end=dates[1] if dates else None,
        confidence=fields.get("confidence"),
        **{name: fields.get(name, "") for name in NOTE_FIELDS},
    )
    return week.check_ins(data).record(check_in, on_day=today)


def _out(cycle: str, row: dict) -> CheckInOut:
    from core.checkins import confidence_label, week_label

    return CheckInOut(
        cycle=cycle,
        kr=row["kr"],
        week=row["week"],
        week_label=week_label(row["week"]),
        team=row.get("team"),
        confidence=int(row["confidence"]),
        confidence_text=confidence_label(int(row["confidence"])),
        progress=row["progress"],
        problems=row["problems"],
        next_steps=row["next_steps"],
        value=views.number(row.get("value")),
        value_as_of=row.get("value_as_of") or None,
        author=row.get("author"),
        revision=int(row["revision"]),
    )


async def _json_body(request: Request) -> Any:
    forms.require_json(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise Refused(413, "The request body is too large.")
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise Refused(400, "The body is not valid JSON.") from None


def add_routes(
    app: FastAPI, data: views.DashboardData, page: Callable[..., HTMLResponse]
) -> forms.CsrfGuard:
    """Register the week's pages and API on `app`; returns the CSRF guard the KR page uses too."""
    guard = forms.CsrfGuard()

    def form_page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        token, cookie = guard.token(request)
        response = page(request, name, status_code=status_code, csrf_token=token, **context)
        return guard.set_cookie(request, response, cookie)

    async def checked_form(request: Request) -> dict[str, list[str]]:
        form = await forms.read_form(request)
        guard.check(request, form)
        return form

    # --- pages -----------------------------------------------------------------------------

    @app.post("/kr/{cycle}/{kr}/check-in", include_in_schema=False)
    async def kr_check_in(request: Request, cycle: str, kr: str):
        try:
            form = await checked_form(request)
            _save(data, request, cycle, kr, {k: v[0] for k, v in form.items()})
        except Refused as refused:
            return refused.response(request)
        except CheckInError as error:
            return page(request, "empty.html", status_code=400, message=str(error))
        target = f"/kr/{quote(cycle, safe='')}/{quote(kr, safe='')}?saved=1#check-ins"
        return RedirectResponse(target, status_code=303)

    @app.get("/check-in", response_class=HTMLResponse, include_in_schema=False)
    def team_form(request: Request, cycle: str | None = None, team: str | None = None):
        try:
            model = week.team_check_in(data, cycle or None, team or None)
        except views.NotFound as error:
            return page(request, "empty.html", status_code=404, message=str(error))
        saved = request.query_params.get("saved")
        return form_page(request, "checkin_team.html", t=model, saved=saved)

    @app.post("/check-in", include_in_schema=False)
    async def team_submit(request: Request):
        try:
            form = await checked_form(request)
        except Refused as refused:
            return refused.response(request)
        first = {k: v[0] for k, v in form.items()}
        cycle, team = first.get("cycle", ""), first.get("team") or None
        saved, problems = 0, []
        for kr in form.get("kr", []):
            confidence = first.get(f"confidence:{kr}", "")
            if not confidence:
                continue  # a KR left without a confidence is not checked in
            fields = {"confidence": confidence} | {
                name: first.get(f"{name}:{kr}", "") for name in NOTE_FIELDS
            }
            try:
                _save(data, request, cycle, kr, fields)
                saved += 1
            except CheckInError as error:
                problems.append(f"{kr}: {error}")
        if problems:
            return page(request, "empty.html", status_code=400, message="; ".join(problems))
        query = urlencode({"cycle": cycle, **({"team": team} if team else {}), "saved": saved})
        return RedirectResponse(f"/check-in?{query}", status_code=303)

    @app.get("/alignment", response_class=HTMLResponse, include_in_schema=False)
    def alignment_page(request: Request, cycle: str | None = None):
        try:
            model = week.alignment(data, cycle or None)
        except views.NotFound as error:
            return page(request, "empty.html", status_code=404, message=str(error))
        return page(request, "alignment.html", a=model)

    @app.get("/retro/{cycle}", response_class=HTMLResponse, include_in_schema=False)
    def retro_page(request: Request, cycle: str):
        try:
            _, known = views.pick_cycle(data, cycle)
        except views.NotFound as error:
            return page(request, "empty.html", status_code=404, message=str(error))
        items = week.check_ins(data).retro_items(cycle)
        return form_page(request, "retro.html", cycle=cycle, cycles=known, items=items)

    @app.post("/retro/{cycle}", include_in_schema=False)
    async def retro_submit(request: Request, cycle: str):
        try:
            form = await checked_form(request)
            first = {k: v[0] for k, v in form.items()}
            item = make_retro_item(
                cycle=cycle,
                text=first.get("text"),
                benefit=first.get("benefit"),
                effort=first.get("effort"),
                author=_author(request),
            )
            week.check_ins(data).add_retro_item(item)
        except Refused as refused:
            return refused.response(request)
        except CheckInError as error:
            return page(request, "empty.html", status_code=400, message=str(error))
        return RedirectResponse(f"/retro/{quote(cycle, safe='')}", status_code=303)

    # --- JSON API ----------------------------------------------------------------------------

    @app.get("/api/cycles/{cycle}/check-ins", response_model=list[CheckInOut], tags=["check-ins"])
    def api_check_ins(cycle: str, kr: str | None = None, team: str | None = None):
        """The cycle's check-ins (one per KR and ISO week), oldest week first."""
        rows = week.check_ins(data).check_ins(cycle=cycle, kr=kr, team=team)
        return [_out(cycle, r) for r in rows.to_dict("records")]

    @app.post(
        "/api/cycles/{cycle}/key-results/{kr}/check-in",
        response_model=CheckInOut,
        tags=["check-ins"],
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": CheckInIn.model_json_schema()}},
                "required": True,
            }
        },
    )
    async def api_check_in(request: Request, cycle: str, kr: str):
        """Check in on a KR for this week (creates it, or edits it until the week ends).

        Body: `{"confidence": 1-5, "progress": "...", "problems": "...", "next_steps": "..."}`.
        """
        try:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise CheckInError("send a JSON object with confidence and the notes")
            stored = _save(data, request, cycle, kr, body)
        except Refused as refused:
            return refused.response(request)
        except CheckInError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return JSONResponse(_out(cycle, stored).model_dump(mode="json"))

    @app.get(
        "/api/cycles/{cycle}/retrospective",
        response_model=list[RetroItemOut],
        tags=["retrospective"],
    )
    def api_retro(cycle: str):
        """The cycle's retrospective items, best first; the top three quick wins marked."""
        return week.check_ins(data).retro_items(cycle)

    app.state.csrf = guard
    return guard
