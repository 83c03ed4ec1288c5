"""`collector chart`: the pictures bank ops look at, as files: an SVG to put in a report, or a page to
open in a browser and print on A4 (collector/charts/)."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from collector.cli.common import Context, emit, json_option, with_config, write_new_file
from collector.errors import InputError

#: What a file's ending makes.
KINDS = {".svg": "svg", ".html": "page"}


def _kind(out: str) -> str:
    """svg or page from the name, and no file there: refused before any work is done."""
    kind = KINDS.get(Path(out).suffix.lower())
    if kind is None:
        raise click.ClickException(f"{out}: a chart is written as .svg or .html (a page that prints on A4)")
    if os.path.lexists(out):
        raise click.ClickException(f"{out} already exists; choose another name (nothing is overwritten)")
    return kind


def _write(out: str, kind: str, svg: str, *, title: str, lines: list[str], lang: str) -> None:
    from collector.charts.svg import html_page

    if kind == "svg":
        data = '<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n"
    else:
        data = html_page(svg, title=title, lines=lines, lang=lang)
    write_new_file(out, data.encode("utf-8"))


def out_option(what: str):
    return click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
                        help=f"FILE.svg, or FILE.html to open in a browser and print (A4); a new file, 0600: {what}.")


lang_option = click.option("--lang", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True,
                           help="The language of the chart's words.")


@click.group("chart")
def chart_group() -> None:
    """Pictures where a glance beats a table: days worked over a site's month, wages overdue."""


@chart_group.command("days")
@click.option("--site", required=True)
@click.option("--month", required=True, help="YYYY-MM (the site's calendar month).")
@out_option("it names workers")
@lang_option
@json_option
@with_config
def days_command(ctx: Context, site: str, month: str, out: str, lang: str, as_json: bool) -> None:
    """Days worked per worker over SITE's month (the 考勤表's count, with the days still to check), most
    first; past 50 workers, how many workers worked how many days."""
    from collector.charts.month import MOST_BARS, month_chart, month_figures
    from collector.charts.words import Words
    from collector.localtime import local_text_dt, zone

    kind = _kind(out)
    with ctx.store(readonly=True) as store:
        row = store.site(site)
        if row is None:
            raise InputError(f"site {site} does not exist")
        figures = month_figures(store, site, month, grace=timedelta(hours=ctx.config.final_grace_hours))
    words = Words(lang)
    title = words("chart.days.title", site=figures["site_name"], month=words.month(figures["month"]))
    made = (local_text_dt(datetime.now(UTC), zone(row["timezone"])) or "")[:16].replace("T", " ")
    _write(out, kind, month_chart(figures, words, titled=kind == "svg"), title=title, lang=lang,
           lines=[words("chart.made", time=made, zone=row["timezone"])])
    workers = figures["workers"]
    days = sum(w["days"] for w in workers)
    review = sum(w["review"] for w in workers)
    emit(as_json, {"site": site, "month": figures["month"], "file": out, "workers": len(workers), "days": days,
                   "days_to_review": review, "drawn": "per worker" if len(workers) <= MOST_BARS else "histogram"},
         f"{out}: days worked at {site} in {figures['month']}: {len(workers)} worker(s), {days:g} day(s), "
         f"{review} to check" + ("" if len(workers) <= MOST_BARS else f" (drawn as a histogram: more than "
                                                                        f"{MOST_BARS} workers)"))


@chart_group.command("arrears")
@click.option("--site", help="One site (default: every site).")
@click.option("--as-of", "as_of", help="The date to judge on, YYYY-MM-DD (default: as the daemon keeps each site); "
                                       "computed now.")
@click.option("--fresh", is_flag=True, help="Compute every site now instead of reading what the daemon keeps.")
@out_option("it names sites and employers")
@lang_option
@json_option
@with_config
def arrears_command(ctx: Context, site: str | None, as_of: str | None, fresh: bool, out: str, lang: str,
                    as_json: bool) -> None:
    """Wages overdue by site and by employer (approved amounts, and estimates where no table was approved),
    as `collector arrears` reads them."""
    from collector.charts.arrears import arrears_chart, arrears_figures
    from collector.charts.words import Words
    from collector.localtime import check_date
    from collector.money import yuan
    from collector.wages.figures import arrears_report

    kind = _kind(out)
    day = None
    if as_of is not None:
        try:
            day = check_date(date.fromisoformat(as_of)) if len(as_of) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise InputError(f"--as-of {as_of!r} is not a date YYYY-MM-DD")
    with ctx.store(readonly=True) as store:
        report = arrears_report(store, site=site, as_of=day, fresh=fresh, compute_missing=True,
                                grace=timedelta(hours=ctx.config.final_grace_hours))
        figures = arrears_figures(store, report)
    words = Words(lang)
    dates = figures["as_of"]
    title = words("chart.arrears.title", date=(dates[0] if len(dates) == 1 else f"{dates[0]}–{dates[-1]}")
                  if dates else "–")
    _write(out, kind, arrears_chart(figures, words, titled=kind == "svg"), title=title, lines=[], lang=lang)
    overdue = sum(s["overdue_fen"] for s in figures["sites"])
    estimate = sum(s["estimate_fen"] for s in figures["sites"])
    workers = sum(s["workers"] for s in figures["sites"])
    emit(as_json, {"file": out, "sites": len(figures["sites"]), "overdue_fen": overdue, "estimate_fen": estimate,
                   "overdue_workers": workers, "employers": len(figures["employers"])},
         f"{out}: wages overdue at {len(figures['sites'])} site(s): {yuan(overdue)} yuan"
         + (f" and an estimated {yuan(estimate)}" if estimate else "") + f", {workers} worker(s), "
         f"{len(figures['employers'])} employer(s)")


def register(main: click.Group) -> None:
    main.add_command(chart_group)
