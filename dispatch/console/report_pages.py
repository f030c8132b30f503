"""Reports on the console: one day's figures drawn as charts, the service levels, the settlement download.

The page is a frame; its script (`static/reports.js`) reads
`GET /api/v1/figures/daily?day=` and `GET /api/v1/service-levels?day=` and
draws the charts as inline SVG with its own few lines (no charting library: the
charts are bars and one target line, and every asset must be served by us).
The monthly settlement workbook is `GET /api/v1/reports/settlement?month=`,
offered to supervisors and administrators only (the API refuses anyone else).
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.console.i18n import _N
from dispatch.console.pages import gettext_for, page, render

routes = web.RouteTableDef()

# What the charts write, sent to the page translated (beside the floor's texts in CARELINE.texts).
REPORT_TEXTS = (
    _N("Calls answered within %s s"),
    _N("Offers accepted in time"),
    _N("Visits on time"),
    _N("target %s"),
    _N("median"),
    _N("90th percentile"),
    _N("Answer"),
    _N("Dispatch"),
    _N("On scene"),
    _N("No data"),
    _N("%s s"),
    _N("not measured"),
    _N("Could not read the figures: %s"),
    _N("so far today"),
)


def _day(raw: str | None, today: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(raw) if raw else today
    except ValueError:
        return today


@routes.get("/console/reports")
@page()
async def reports_page(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    _ = gettext_for(request)
    local_now = runtime.clock().astimezone(runtime.tz)
    today = local_now.date()
    day = _day(request.query.get("day"), today)
    last_month = (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    return render(
        request,
        "reports.html",
        {
            "day": day.isoformat(),
            "previous_day": (day - dt.timedelta(days=1)).isoformat(),
            "next_day": (day + dt.timedelta(days=1)).isoformat() if day < today else None,
            "today": today.isoformat(),
            "settlement_month": last_month,
            "report_texts": {text: _(text) for text in REPORT_TEXTS},
        },
    )
