"""Wages overdue by site and by employer, for bank ops: from the arrears report (``wages.figures``: as the
daemon keeps each site's, or as of a date), in integer fen to the last step, where Decimal writes yuan.

A bar is what is overdue of approved wages (solid) and, beside it, the estimate of what is owed where no
wage table was approved (striped: an estimate, said as one). A site whose arrears could not be computed is
listed as such, never drawn as nothing owed."""

from __future__ import annotations

from collector.charts.svg import (
    MUTED,
    SMALL,
    BarRow,
    Canvas,
    bar_rows,
    empty,
    heading,
    legend,
    paragraph,
    yuan,
)
from collector.charts.words import Words
from collector.store import Store

KEY = "arrears"
#: Bars drawn per panel at most, the largest first; the rest are counted in a line.
MOST_ROWS = 30


def arrears_figures(store: Store, report: dict) -> dict:
    """Per site and per employer of a site: overdue fen, estimated fen, workers; largest first."""
    names = {s["site"]: s["name"] or s["site"] for s in store.sites()}

    def amounts(row: dict) -> dict:
        return {"overdue_fen": row["overdue_fen"], "estimate_fen": row["overdue_estimate_fen"],
                "workers": row["overdue_workers"]}

    sites = [{"site": s["site"], "name": names.get(s["site"], s["site"]), "as_of": s.get("as_of"),
              "error": s.get("error"), **amounts(s)} for s in report["sites"]]
    employers = [{"site": e["site"], "name": names.get(e["site"], e["site"]), "employer": e["employer"] or None,
                  **amounts(e)} for e in report["employers"] if e["overdue_workers"]]

    def largest(row: dict) -> tuple:
        return (-(row["overdue_fen"] + row["estimate_fen"]), row["site"], row.get("employer") or "")

    dates = sorted({s["as_of"] for s in sites if s["as_of"]})
    return {"as_of": dates, "sites": sorted(sites, key=largest), "employers": sorted(employers, key=largest)}


def arrears_chart(figures: dict, words: Words, *, titled: bool = False) -> str:
    dates = figures["as_of"]
    when = (dates[0] if len(dates) == 1 else f"{dates[0]}–{dates[-1]}") if dates else "–"
    title = words("chart.arrears.title", date=when)
    sites, employers = figures["sites"], figures["employers"]
    overdue = sum(s["overdue_fen"] for s in sites)
    estimate = sum(s["estimate_fen"] for s in sites)
    workers = sum(s["workers"] for s in sites)
    if not sites:
        return empty(KEY, title, words("chart.arrears.no_sites"), titled=titled)
    if not overdue and not estimate and not any(s["error"] for s in sites):
        return empty(KEY, title, words("chart.arrears.none"), titled=titled)
    canvas = Canvas(KEY)
    top = heading(canvas, title) if titled else 0
    caption = words("chart.arrears.caption", amount=yuan(overdue), workers=workers)
    if estimate:
        caption += " · " + words("chart.arrears.estimated", amount=yuan(estimate))
    top = paragraph(canvas, top, caption, size=12, fill="#1b1f24")

    def rows(found: list[dict], label) -> list[BarRow]:
        made = []
        for row in found[:MOST_ROWS]:
            if row.get("error"):
                said, segments = words("chart.arrears.error"), []
            elif row["overdue_fen"] or row["estimate_fen"]:
                said = words("chart.arrears.said", amount=yuan(row["overdue_fen"]), workers=row["workers"])
                segments = [(row["overdue_fen"], "overdue"), (row["estimate_fen"], "estimate")]
            else:
                said, segments = words("chart.arrears.nothing"), []
            made.append(BarRow(label(row), said, segments,
                               {"site": row["site"], "overdue": row["overdue_fen"], "estimate": row["estimate_fen"]}))
        return made

    def panel(top: float, heading_key: str, found: list[dict], label) -> float:
        canvas.text(4, top + 12, words(heading_key), size=SMALL, fill=MUTED, weight="bold")
        drawn = rows(found, label)
        canvas.add(f'<g data-panel="{heading_key.rsplit(".", 1)[1]}">')
        bottom = bar_rows(canvas, top + 16, drawn,
                          maximum=max((r["overdue_fen"] + r["estimate_fen"] for r in found), default=0))
        canvas.add("</g>")
        if len(found) > MOST_ROWS:
            canvas.text(4, bottom + 10, words("chart.arrears.more", count=len(found) - MOST_ROWS), size=SMALL,
                        fill=MUTED)
            bottom += 16
        return bottom

    top = panel(top, "chart.arrears.by_site", sites, lambda r: f"{r['name']} ({r['site']})" if r["name"] != r["site"]
                else r["site"])
    if employers:
        top = panel(top + 4, "chart.arrears.by_employer", employers,
                    lambda r: f"{r['name']} · {r['employer'] or words('employer.none')}")
    bottom = legend(canvas, top + 6, [("overdue", words("chart.arrears.legend_overdue")),
                                      ("estimate", words("chart.arrears.legend_estimate"))])
    bottom = paragraph(canvas, bottom, words("chart.arrears.rule"))
    return canvas.render(bottom + 4, title=title, description=caption)
