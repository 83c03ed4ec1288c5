"""The charts' routes: pictures drawn on the server as SVG (collector/charts), which a page's script
fetches with the page's own access and inserts as parsed SVG (static/charts.js).

- ``/api/sites/{site}/charts/day[?date=]``: the foreman's day (today by default), from that day's kept
  days: what the attendance table of the page reads, never the site's month;
- ``/api/sites/{site}/charts/days?month=``: days worked per worker over the site's month (the bank's
  page asks for it; a site's holder may read its own);
- ``/api/charts/arrears``: wages overdue by site and employer, bank tokens only, as the daemon keeps them;
- ``/api/worker/calendar[?month=]``: the worker's month as a calendar, from that worker's own rows only,
  for the link's holder. Their page's record already noted the look in their access log; the calendar
  of the same month is no second look.

Each takes ``?lang=zh-CN|en`` (the page's language, which its switch may have changed), else the
request's Accept-Language.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from collector.attendance.reports import site_rules
from collector.charts.arrears import arrears_chart, arrears_figures
from collector.charts.calendar import calendar_chart, calendar_figures
from collector.charts.day import day_chart, day_figures
from collector.charts.month import month_chart, month_figures
from collector.charts.words import Words, language
from collector.config import CollectorConfig
from collector.localtime import to_local
from collector.wages.figures import arrears_report
from collector.web.common import WORKER, Access, ApiError, asked_day, page_language, read_store, route
from collector.web.worker import WorkerApi

SVG = "image/svg+xml; charset=utf-8"


class ChartApi:
    """The charts' routes, each behind the same access as the data it draws."""

    def __init__(self, config: CollectorConfig, access: Access, workers: WorkerApi):
        self.config = config
        self.access = access
        self.workers = workers
        self.grace = timedelta(hours=config.final_grace_hours)

    def routes(self) -> list:
        return [
            route("/api/sites/{site}/charts/day", self.day, self.access.site),
            route("/api/sites/{site}/charts/days", self.days, self.access.site),
            route("/api/charts/arrears", self.arrears, self.access.bank),
            route("/api/worker/calendar", self.calendar, WORKER),
        ]

    def day(self, request: Request) -> Response:
        site = request.path_params["site"]
        now = datetime.now(UTC)
        with read_store(self.config.db) as store:
            _known(store, site)
            day = asked_day(request, site_rules(store, site).tz)
            figures = day_figures(store, site, day, now=now, grace=self.grace)
        return _svg(day_chart(figures, _words(request)))

    def days(self, request: Request) -> Response:
        site = request.path_params["site"]
        now = datetime.now(UTC)
        with read_store(self.config.db) as store:
            _known(store, site)
            month = request.query_params.get("month")
            if month is None:
                month = f"{(to_local(now, site_rules(store, site).tz) or now):%Y-%m}"
            figures = month_figures(store, site, month, now=now, grace=self.grace)  # InputError: 400
        return _svg(month_chart(figures, _words(request)))

    def arrears(self, request: Request) -> Response:
        with read_store(self.config.db) as store:
            if not store.has("payments"):
                raise ApiError(503, "the database has no wage payments yet (collector db upgrade)")
            figures = arrears_figures(store, arrears_report(store, grace=self.grace))
        return _svg(arrears_chart(figures, _words(request)))

    def calendar(self, request: Request) -> Response:
        with self.workers._reader() as store:
            worker = self.workers._worker(request, store)
            figures = calendar_figures(store, worker, request.query_params.get("month"), grace=self.grace)
        return _svg(calendar_chart(figures, _words(request)))


def _known(store, site: str) -> None:
    if store.site(site) is None:
        raise ApiError(404, f"there is no site {site}")


def _words(request: Request) -> Words:
    return Words(language(request.query_params.get("lang")) or page_language(request.headers.get("accept-language")))


def _svg(text: str) -> Response:
    return Response(text.encode("utf-8"), media_type=SVG)
