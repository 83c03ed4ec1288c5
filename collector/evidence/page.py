"""The evidence file as a page a worker reads on a phone: the same signed file, in Chinese (or English),
every time in the site's zone, the worker and the period, each day in words with the manual entries and
voids behind it, the bank's key id, the evidence id and the days id, and a QR code holding how to check it.

The page is built from the file alone, never from the database, so that it shows what the file says and
nothing else; and it says that it is only a reading: what proves the file is `collector verify` (or
tools/verify_evidence.py) with the bank's published key (docs/verify-evidence.md). Nothing here checks a
signature.

It reads files of formats 1 and 2 and takes from a file only what both keep: ``format``, ``version``,
``generated_at``, ``worker``, ``period``, ``sites`` (their ``timezone``), ``manual``, ``voids``, ``days``
(date, first in, last out, minutes worked, status, flags, shifts, anomalies, voided), ``bank_key``, ``key``.
Every value of the file is hostile: the template escapes everything, a value of the wrong type shows as
"?", and a document that is not an evidence file gives a page that says so, never an exception.

The words are the pages' catalogs' (collector/web/static/i18n/, keys ``evidence_page.*``, and the worker
page's ``worker.status_*`` and ``worker.flag_*``, so that a day is said the same way on both pages).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from gate_agent.extras import require

#: What an evidence file names itself (collector/evidence/document.py: FORMAT).
FORMAT = "site-gate-evidence"
#: The versions this page was written for; a later one is shown with a warning that parts may be missing.
KNOWN_VERSIONS = (1, 2)
LANGUAGES = ("zh-CN", "en")
TEMPLATES = Path(__file__).parent / "templates"
CATALOGS = Path(__file__).parent.parent / "web" / "static" / "i18n"
#: Error correction M, as every other code the bank prints (collector/qr.py).
QR_ERROR = "m"
#: Longer texts of a hostile file are cut here: a page, not a dump of whatever the file holds.
MAX_TEXT = 400

_HEX16, _HEX64 = re.compile(r"[0-9a-f]{16}"), re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}")


class _Words:
    """The catalog of one language: ``w(key, **values)`` with ``{name}`` filled in (escaped later, by the
    template, like everything else)."""

    def __init__(self, lang: str):
        self.lang = lang if lang in LANGUAGES else LANGUAGES[0]
        self.catalog = _catalog(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        text = self.catalog.get(key, key)
        return re.sub(r"\{([a-z_]+)\}", lambda m: str(values.get(m.group(1), m.group(0))), text)

    def has(self, key: str) -> bool:
        return key in self.catalog


@functools.cache
def _catalog(lang: str) -> dict[str, str]:
    return json.loads((CATALOGS / f"{lang}.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------ the page


def render_evidence_page(document: object, lang: str = "zh-CN", *, file_name: str | None = None) -> str:
    """The page of an evidence ``document`` (the file's JSON, as read) in ``lang`` (zh-CN or en); for a
    document that is not an evidence file, a page saying so. ``file_name``: what the file is called where
    it was written, for the commands that check it (else the name the worker's page downloads it as)."""
    words = _Words(lang)
    why = _not_evidence(document)
    if why is not None:
        return render_error_page(why, lang=lang)
    return _template("evidence_page.html").render(page=_reading(document, words, file_name), w=words,
                                                  lang=words.lang, style=style())


def render_evidence_bytes(data: bytes, lang: str = "zh-CN", *, file_name: str | None = None) -> str:
    """The page of an evidence file's bytes, read as strictly as `collector verify` reads them; a page
    saying why for bytes that are not such a file."""
    from collector.evidence.document import EvidenceError, read_evidence

    try:
        document = read_evidence(data)
    except EvidenceError as error:
        return render_error_page("not_read", str(error), lang=lang)
    return render_evidence_page(document, lang, file_name=file_name)


def render_error_page(reason: str, detail: str = "", *, lang: str = "zh-CN") -> str:
    """The page for a file that cannot be shown: ``reason`` (``evidence_page.error_<reason>`` of the
    catalog) and the reader's own ``detail`` (escaped, cut), if any."""
    words = _Words(lang)
    return _template("evidence_error.html").render(reason=words(f"evidence_page.error_{reason}"), detail=_cut(detail),
                                                   w=words, lang=words.lang, style=style())


def style() -> str:
    """The pages' one style sheet, inlined: a saved page stands alone, and `collector serve` allows it by
    its hash (``content_security_policy``), as it allows no other inline style and no script."""
    return _style()


@functools.cache
def _style() -> str:
    return (TEMPLATES / "evidence_page.css").read_text(encoding="utf-8")


def content_security_policy() -> str:
    """The policy the page is served with: its own style (by hash), nothing else; no script at all."""
    digest = base64.b64encode(hashlib.sha256(style().encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


def _not_evidence(document: object) -> str | None:
    """Why ``document`` is not an evidence file (a catalog key's end), or None."""
    if not isinstance(document, dict):
        return "not_object"
    if document.get("format") != FORMAT:
        return "not_format"
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return "no_version"
    return None


# ------------------------------------------------------------------------------------------ reading the file


def _reading(document: dict, w: _Words, file_name: str | None = None) -> dict:
    """What the page shows, every value a string (or a list of them) made from the file's values."""
    sites = document.get("sites") if isinstance(document.get("sites"), dict) else {}
    zones = {site: _zone(value.get("timezone") if isinstance(value, dict) else None) for site, value in sites.items()}
    worker = document.get("worker") if isinstance(document.get("worker"), dict) else {}
    period = document.get("period") if isinstance(document.get("period"), dict) else {}
    manual = [e for e in _list(document.get("manual")) if isinstance(e, dict)]
    voids = [v for v in _list(document.get("voids")) if isinstance(v, dict)]
    days = [d for d in _list(document.get("days")) if isinstance(d, dict)]
    known_zones = sorted({z.key for z in zones.values() if z is not None})
    page_zone = zones.get(sorted(zones, key=str)[0]) if zones else None

    shown_days, placed = [], set()
    for day in days:
        site = day.get("site")
        tz = zones.get(site) if isinstance(site, str) else None
        refs = _day_refs(day)
        mine = [e for e in manual if _ref(e) in refs]
        voided = [v for v in voids if _ref(v) in refs]
        entries = [_manual(e, zones, w) for e in mine] + [_void(v, zones, w) for v in voided]
        placed |= {id(entry) for entry in mine + voided}
        shown_days.append(_day(day, tz, sites, w, entries))
    others = [_manual(e, zones, w) for e in manual if id(e) not in placed]
    others += [_void(v, zones, w) for v in voids if id(v) not in placed]

    minutes = [m for m in (_minutes(d.get("worked_minutes")) for d in days) if m is not None]
    version = document["version"]
    worker_id = _text(worker.get("worker"))
    first, last = _text(period.get("from")), _text(period.get("to"))
    if file_name is None or not _ID.fullmatch(file_name):
        file_name = (f"evidence-{worker_id}-{first}-{last}.json"
                     if _ID.fullmatch(worker_id) and _is_date(first) and _is_date(last) else "evidence.json")
    ids = _ids(document)
    key = document.get("key") if isinstance(document.get("key"), str) and _HEX16.fullmatch(document["key"]) else None
    return {
        "name": _text(worker.get("name")), "worker": worker_id, "employer": _text(worker.get("employer"), ""),
        "from": first, "to": last,
        "summary": w("evidence_page.summary", days=len(days), hours=_hours(sum(minutes), w)),
        "days": shown_days, "others": others,
        "key": key or "?", "evidence_id": ids[0], "days_id": ids[1],
        "generated": _instant(document.get("generated_at"), page_zone),
        "format": w("evidence_page.format_value", format=FORMAT, version=version),
        "newer": version not in KNOWN_VERSIONS,
        "zones": ", ".join(known_zones) or "?",
        "file_name": file_name,
        "qr": _qr(file_name, ids, key, w),
    }


def _ref(entry: dict) -> str | None:
    """A manual entry's or a void's reference, if it is text."""
    ref = entry.get("ref")
    return ref if isinstance(ref, str) else None


def _day_refs(day: dict) -> set[str]:
    """The punches a day rests on or set aside: its shifts' ends, its anomalies, its voided punches."""
    refs = set()
    for shift in _list(day.get("shifts")):
        if isinstance(shift, dict):
            refs |= {shift.get(k) for k in ("in_ref", "out_ref") if isinstance(shift.get(k), str)}
    for anomaly in _list(day.get("anomalies")):
        if isinstance(anomaly, dict) and isinstance(anomaly.get("ref"), str):
            refs.add(anomaly["ref"])
    refs |= {ref for ref in _list(day.get("voided")) if isinstance(ref, str)}
    return refs


def _day(day: dict, tz: ZoneInfo | None, sites: dict, w: _Words, entries: list[dict]) -> dict:
    when = _text(day.get("date"))
    weekday = ""
    if _is_date(when):
        weekday = w("worker.weekdays").split(",")[(date.fromisoformat(when).isoweekday()) % 7]
    site = _text(day.get("site"))
    about = sites.get(site) if isinstance(sites.get(site), dict) else {}
    site_name = about.get("name") if isinstance(about.get("name"), str) else None
    status = _text(day.get("status"))
    flags = [f for f in _list(day.get("flags")) if isinstance(f, str)]
    notes = [_flag(f, w) for f in flags if f not in ("missing_in", "missing_out")]  # said by the status
    if any(not isinstance(f, str) for f in _list(day.get("flags"))):
        notes.append(w("worker.flag_unknown", flag="?"))
    shifts = []
    for number, shift in enumerate((s for s in _list(day.get("shifts")) if isinstance(s, dict)), start=1):
        shifts.append(w("evidence_page.shift", n=number, start=_clock(shift.get("in"), when, tz, w),
                        end=_clock(shift.get("out"), when, tz, w)))
    anomalies = [w("evidence_page.anomaly", ref=_text(a.get("ref")), why=_flag(_text(a.get("why")), w))
                 for a in _list(day.get("anomalies")) if isinstance(a, dict)]
    minutes = _minutes(day.get("worked_minutes"))
    return {
        "date": when, "weekday": weekday,
        "site": w("evidence_page.site", site=_cut(site_name) if site_name else site),
        "first_in": _clock(day.get("first_in"), when, tz, w), "last_out": _clock(day.get("last_out"), when, tz, w),
        "worked": _hours(minutes, w) if minutes is not None else "?",
        "status": w(f"worker.status_{status}") if w.has(f"worker.status_{status}") else w("worker.flag_unknown", flag=status),
        "status_class": status if status in ("complete", "open", "missing_in", "missing_out", "anomaly", "error") else "other",
        "flags": notes, "shifts": shifts if len(shifts) > 1 else [], "anomalies": anomalies,
        "error": _text(day.get("error"), "") if status == "error" else "",
        "entries": entries,
    }


def _manual(entry: dict, zones: dict, w: _Words) -> dict:
    site = entry.get("site")
    tz = zones.get(site) if isinstance(site, str) else None
    direction = entry.get("direction")
    said = w("evidence_page.manual", direction=w(f"evidence_page.direction_{direction}")
             if direction in ("in", "out") else _text(direction),
             time=_instant(entry.get("time"), tz), by=_text(entry.get("by")),
             entered=_instant(entry.get("entered_at"), tz), ref=_text(entry.get("ref")))
    return {"kind": "manual", "said": said, "reason": _text(entry.get("reason")), "dispute": _dispute(entry, w)}


def _void(void: dict, zones: dict, w: _Words) -> dict:
    site = void.get("site")
    tz = zones.get(site) if isinstance(site, str) else None
    said = w("evidence_page.void", ref=_text(void.get("ref")), by=_text(void.get("by")),
             at=_instant(void.get("void_at"), tz))
    return {"kind": "void", "said": said, "reason": _text(void.get("reason")), "dispute": _dispute(void, w)}


def _dispute(entry: dict, w: _Words) -> str:
    ref = entry.get("dispute")
    return w("evidence_page.answers_dispute", ref=_cut(ref)) if isinstance(ref, str) and ref else ""


def _flag(flag: str, w: _Words) -> str:
    return w(f"worker.flag_{flag}") if w.has(f"worker.flag_{flag}") else w("worker.flag_unknown", flag=flag)


def _ids(document: dict) -> tuple[str, str]:
    """The evidence id and the days id, as `collector verify` prints them (collector/evidence/document.py),
    or "?" when the file is too broken to compute one."""
    from collector.evidence.document import days_id, evidence_id

    found = []
    for compute in (lambda: evidence_id(document), lambda: days_id(document["days"])):
        try:
            value = compute()
        except Exception:  # noqa: BLE001 - any broken value of a hostile file: the id is then not shown
            value = None
        found.append(value if isinstance(value, str) and _HEX64.fullmatch(value) else "?")
    return found[0], found[1]


def _qr(file_name: str, ids: tuple[str, str], key: str | None, w: _Words) -> str:
    """The code as inline SVG (no script, no image to fetch): the ids this page shows and how to check the
    file, as text a phone's scanner shows as it is."""
    segno = require("segno", "bank")
    text = "\n".join([
        w("evidence_page.qr_title"),
        f"{w('evidence_page.evidence_id')}: {ids[0]}",
        f"{w('evidence_page.days_id_short')}: {ids[1]}",
        f"{w('evidence_page.bank_key')}: {key or '?'}",
        f"collector verify {file_name} --bank-key bank.pub",
        f"python3 verify_evidence.py {file_name} bank.pub",
        f"{w('evidence_page.qr_guide')}docs/verify-evidence.md",
    ])
    return segno.make(text, error=QR_ERROR, micro=False).svg_inline(scale=4, border=4, omitsize=True)


# ------------------------------------------------------------------------------------------ values


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def _text(value: object, missing: str = "?") -> str:
    """A text of the file as it is (cut when very long); a number as written; anything else ``missing``."""
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return missing


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _zone(name: object) -> ZoneInfo | None:
    if not isinstance(name, str) or len(name) > 64 or not _ZONE.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError, OSError: a zone this machine lacks
        return None


def _moment(value: object, tz: ZoneInfo | None) -> datetime | None:
    """An ISO time with its offset (or Z), in the site's zone; None for anything else."""
    if not isinstance(value, str) or not 16 <= len(value) <= 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return None
        return moment.astimezone(tz) if tz is not None else moment
    except (ValueError, OverflowError):
        return None


def _clock(value: object, day: str, tz: ZoneInfo | None, w: _Words) -> str:
    """A day's time: ``08:00``, ``次日 06:00`` past midnight, the date too further off; "无" for none."""
    if value is None:
        return w("worker.none")
    moment = _moment(value, tz)
    if moment is None:
        return _text(value)
    clock = moment.strftime("%H:%M")
    if moment.date().isoformat() == day:
        return clock
    if _is_date(day) and (moment.date() - date.fromisoformat(day)).days == 1:
        return f"{w('worker.next_day')} {clock}"
    return f"{moment.date().isoformat()} {clock}"


def _instant(value: object, tz: ZoneInfo | None) -> str:
    """A moment (a UTC time of the file) as the site reads it: ``2026-10-15 18:00``."""
    moment = _moment(value, tz)
    if moment is None:
        return _text(value)
    return moment.strftime("%Y-%m-%d %H:%M")


def _minutes(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= 10**9:  # also NaN
        return None
    return int(round(value))


def _hours(minutes: int, w: _Words) -> str:
    return w("worker.hours", h=minutes // 60, m=minutes % 60)
