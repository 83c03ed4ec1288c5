"""Registry input: the worker file bank ops import, ids, and the times people type.

A worker file is a table as collector/tabular.py reads it: CSV in UTF-8 (with or without a BOM) or
GB18030/GBK (what Excel on Chinese Windows writes), or an XLSX workbook, with English or Chinese headers
and any title rows above them. Importing is an explicit upsert: each row says what a worker
is now; the plan lists what is new, what changes and what stays, and applies all of it or nothing.

An entry date (进场日期) starts the worker's assignment to the site of the row, at the beginning of that day
in the site's zone; a later file with another entry date moves that start. A refused row or file is said
in the language of the file's headers, naming the file's own header (collector/workers/problems.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from collector import masking
from collector.errors import InputError
from collector.identity import MASKS, PAYEE_CHECKS, PayeeError, masked
from collector.money import MAX_RATE_FEN, MoneyError, parse_yuan, rate_problem, yuan
from collector.tabular import HEADER_WITHIN, TableError, TooManyRows, read_table
from collector.text import NAME_MAX_CHARS, TextError, entered
from collector.workers.problems import (
    ROW_WORDS,
    Fault,
    FileProblem,
    Voice,
    language_of,
    shown,
    sniff_language,
)
from gate_agent.protocol import format_time, normalise_uid, valid_id

#: Column -> the headers that name it (compared as collector/tabular.header_key compares them).
COLUMNS = {
    "worker": ("worker", "工号", "编号", "人员编号"),
    "name": ("name", "姓名"),
    "card": ("card", "卡号", "考勤卡号"),
    # 班组 is the work team and 工种 the trade, never the employer (the labour company, 单位).
    "employer": ("employer", "单位", "用工单位", "劳务公司", "劳务单位"),
    "team": ("team", "班组", "班组名称"),
    "trade": ("trade", "工种"),
    "site": ("site", "工地", "项目", "工地编号"),
    "id_number": ("id_number", "身份证号", "身份证号码", "身份证"),
    "phone": ("phone", "电话", "手机", "手机号", "联系电话"),
    "bank_account": ("bank_account", "银行账号", "银行卡号", "工资卡号", "账号"),
    "bank_name": ("bank_name", "开户行", "开户银行", "银行"),
    "basis": ("basis", "计薪方式"),
    "rate_yuan": ("rate_yuan", "工资标准", "单价", "日工资", "时薪"),
    "rate_from": ("rate_from", "生效日期"),
    # The day the worker entered the site the row names: their assignment to it starts then.
    "entry_date": ("entry_date", "进场日期", "入场日期", "进场时间", "入场时间"),
}
#: Each column's name in Chinese, for a refusal about a column the file does not have.
CHINESE_NAMES = {name: next(s for s in spellings if not s.isascii()) for name, spellings in COLUMNS.items()}
#: What the worker file's date columns shows for each, in the dry run ("进场日期 -> assignment from").
SHOWN_AS = {"entry_date": "assignment from"}
#: Columns a date cell may fill.
DATES = ("rate_from", "entry_date")
#: An entry date is a day from 2000 to a month ahead: anything else is a typing mistake (2062, 1926).
EARLIEST_DAY = date(2000, 1, 1)
ENTRY_AHEAD = timedelta(days=31)
#: The largest day number of a workbook's number cell read as a date (9999-12-31 in the 1900 system).
MAX_SERIAL = 2_958_465
PAYEE_FAULTS = {"id_number": "bad_id_number", "phone": "bad_phone", "bank_account": "bad_account"}
_BASIS = {"day": "day", "日": "day", "按日": "day", "日薪": "day", "hour": "hour", "时": "hour", "按时": "hour",
          "小时": "hour", "时薪": "hour"}
#: Problems listed in full; beyond this, counted.
MAX_PROBLEMS_SHOWN = 20


#: What the cells of these columns must be: text a spreadsheet did not round (see tabular.cell_text).
IDENTIFIERS = ("worker", "card", "id_number", "phone", "bank_account")
#: A worker file larger than this is several; split it.
MAX_BYTES = 64 * 1024 * 1024
#: The defaults of ``[limits] max_workers_per_file`` and ``max_workers_per_site`` (collector/config.py): a
#: large site's workers. A 700,000-row file was accepted (55 s, 903 MB), after which one worker's page took
#: 19 s and the foreman's headcount 5.6 s.
MAX_WORKERS_PER_FILE = 20_000
MAX_WORKERS_PER_SITE = 20_000


class TooManyWorkers(InputError):
    """A file, an import or an assignment past a bound of ``[limits]``; the message gives the figures."""


@dataclass
class WorkerFile:
    rows: list[dict]
    problems: list[FileProblem]
    encoding: str = ""
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    read_columns: dict[str, str] = field(default_factory=dict)  # field -> the file's header for it
    voice: Voice = field(default_factory=lambda: Voice(""))  # how its refusals are said


def read_worker_file(path: str, *, today: date | None = None, sheet: str | None = None,
                     max_workers: int = MAX_WORKERS_PER_FILE) -> WorkerFile:
    """Every row, checked on its own; every problem with its line (or worksheet row), said in the language
    of the file's headers. TableError for a file that is not a worker file at all (its ``code`` kept, its
    words in the file's language); TooManyWorkers for one with more than ``max_workers`` rows, refused at
    the first row past it (the rest is never parsed), before anything is planned or applied."""
    voice = None
    # Blank rows cost little but are rows to walk: as many again as the workers, and the title rows.
    try:
        table = read_table(path, fields=COLUMNS, identify=("worker", "name"), identifiers=IDENTIFIERS,
                           dates=DATES, date_times=("entry_date",), sheet=sheet, totals="skip",
                           what="a worker file", max_bytes=MAX_BYTES, max_records=max_workers,
                           max_rows=2 * max_workers + 2 * HEADER_WITHIN)
        voice = Voice(str(path), language_of(table.read_columns.values()), dict(table.read_columns), table.sheet,
                      CHINESE_NAMES)
        result = WorkerFile([], [], table.encoding, table.ignored_columns, table.notes, dict(table.read_columns),
                            voice)
        _read_rows(table, result, today or date.today())
    except TooManyRows as error:
        counted = f"{error.limit} rows, blank ones included" if error.blank else f"{max_workers} workers"
        voice = voice or Voice(str(path), sniff_language(path, COLUMNS), names=CHINESE_NAMES)
        message = voice.file_error(TableError(f"{path}: more than {counted}: one file lists at most {max_workers} "
                                              "workers ([limits] max_workers_per_file); nothing imported, split the "
                                              "file", code="too_many_workers", limit=max_workers))
        raise TooManyWorkers(message) from None
    except TableError as error:
        voice = voice or Voice(str(path), sniff_language(path, COLUMNS), names=CHINESE_NAMES)
        raise TableError(voice.file_error(error), code=error.code, **error.details) from None
    return result


def _read_rows(table, result: WorkerFile, today: date) -> None:
    voice = result.voice
    seen_workers: dict[str, int] = {}
    seen_cards: dict[str, tuple[str, int]] = {}
    seen_ids: dict[str, tuple[str, int]] = {}
    mine: list[FileProblem] = []
    for read in table:
        row = dict(read.values)
        fault = _check(row, today, read.cells, table)
        if fault is None and row["worker"] in seen_workers:
            line = seen_workers[row["worker"]]
            fault = Fault("duplicate_worker", f"worker {row['worker']} is also on {_position(table, line)}", "worker",
                          shown(row["worker"]), {"other": _line_words(voice, line)})
        if fault is None and row.get("card") and row["card"] in seen_cards:
            holder, line = seen_cards[row["card"]]
            fault = Fault("duplicate_card", f"card {row['card']} is also given to {holder} on {_position(table, line)}",
                          "card", row["card"], {"other": _line_words(voice, line), "worker": holder})
        if fault is None and row.get("id_number") and row["id_number"] in seen_ids:
            holder, line = seen_ids[row["id_number"]]
            masked = masking.id_number(row["id_number"])
            fault = Fault("duplicate_id_number", f"ID number {masked!r} is also {holder}'s on {_position(table, line)}:"
                          " one person is registered once", "id_number", masked,
                          {"other": _line_words(voice, line), "worker": holder})
        if fault is not None:
            mine.append(voice.row(read.where, read.number, fault))
            continue
        seen_workers[row["worker"]] = read.number
        if row.get("card"):
            seen_cards[row["card"]] = (row["worker"], read.number)
        if row.get("id_number"):
            seen_ids[row["id_number"]] = (row["worker"], read.number)
        row["where"], row["line"] = read.where, read.number
        result.rows.append(row)
    result.problems = [voice.table_problem(problem) for problem in table.problems] + mine


def _position(table, line: int) -> str:
    """Where a row is, as the table reader names it in English: ``line 7``, ``花名册 row 12``."""
    return f"{table.sheet} row {line}" if table.sheet else f"line {line}"


def _line_words(voice: Voice, line: int) -> str:
    if voice.language != "zh":
        return f"line {line}"
    return f"第{line}行"


def _check(row: dict, today: date, cells: tuple = (), table=None) -> Fault | None:
    """Normalise the row in place; why it cannot be imported (the first thing found), or None."""
    if not valid_id(row.get("worker", "")):
        value = row.get("worker", "")
        if not value:
            return Fault("missing", "worker id is empty", "worker")
        return Fault("bad_id", f"worker id {value[:40]!r} is not an id (letters, digits, '_', '.', '-')", "worker",
                     shown(value))
    for column, optional in (("name", False), ("employer", True), ("team", True), ("trade", True),
                             ("bank_name", True)):
        try:
            row[column] = entered(row.get(column), what=column, limit=NAME_MAX_CHARS, optional=optional) or ""
        except TextError as error:
            return Fault(error.code if error.code in ROW_WORDS else "not_text", str(error), column,
                         more={"length": len(str(row.get(column) or "").strip()), "limit": NAME_MAX_CHARS,
                               "point": error.detail})
    if row.get("card"):
        try:
            row["card"] = normalise_uid(row["card"])
        except ValueError as error:
            return Fault("bad_card", str(error), "card", shown(row["card"]))
    if row.get("site") and not valid_id(row["site"]):
        return Fault("bad_id", f"site {row['site'][:40]!r} is not a site id", "site", shown(row["site"]))
    for column, check in PAYEE_CHECKS.items():
        if row.get(column):
            try:  # the store checks them again on writing: one rule for every path (collector.identity)
                row[column] = check(row[column])
            except PayeeError as error:
                return Fault(PAYEE_FAULTS[column], str(error), column, masked(row[column].strip(), MASKS[column]))
    basis, rate = row.get("basis"), row.get("rate_yuan")
    if basis or rate:
        if not (basis and rate):
            return Fault("terms_incomplete", "basis and rate_yuan go together", "basis" if basis else "rate_yuan",
                         more={"basis": "basis", "rate": "rate_yuan"})
        if basis.lower() not in _BASIS:
            return Fault("bad_basis", f"basis {basis[:20]!r} is not day/日 or hour/时", "basis", shown(basis, 20))
        row["basis"] = _BASIS[basis.lower()]
        try:
            row["rate_fen"] = parse_yuan(rate, what="rate_yuan")
        except MoneyError as error:
            return Fault("bad_rate", str(error), "rate_yuan", shown(rate))
        if row["rate_fen"] <= 0:
            return Fault("rate_not_positive", "rate_yuan must be above 0", "rate_yuan", shown(rate))
        if rate_problem(row["basis"], row["rate_fen"]):
            return Fault("implausible_rate", f"rate_yuan: {rate_problem(row['basis'], row['rate_fen'])}", "rate_yuan",
                         yuan(row["rate_fen"]), {"per": "每天" if row["basis"] == "day" else "每小时",
                                                  "bound": yuan(MAX_RATE_FEN[row["basis"]])})
        if row.get("rate_from"):
            day = _day(row, "rate_from", cells, table)
            if isinstance(day, Fault):
                return day
            row["rate_from"] = day.isoformat()
        else:
            row["rate_from"] = today.isoformat()
    if row.get("entry_date"):
        day = _day(row, "entry_date", cells, table)
        if isinstance(day, Fault):
            return day
        if day > today + ENTRY_AHEAD:
            return Fault("date_too_late", f"entry_date {day.isoformat()} is more than a month ahead: check the year",
                         "entry_date", shown(row["entry_date"]))
        if day < EARLIEST_DAY:
            return Fault("date_too_early", f"entry_date {day.isoformat()} is before {EARLIEST_DAY.year}: check the year",
                         "entry_date", shown(row["entry_date"]))
        if not row.get("site"):
            return Fault("entry_without_site", "entry_date without a site: an entry date starts the worker's "
                         "assignment to the site of the row; fill in its site", "entry_date", more={"site": "site"})
        row["entry_date"] = day.isoformat()
    return None


_DAY = re.compile(r"([0-9]{4})(?:([-/.])([0-9]{1,2})\2([0-9]{1,2})|年([0-9]{1,2})月([0-9]{1,2})日?)"
                  r"(?:[ T](?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?)?")


def _day(row: dict, column: str, cells: tuple, table) -> date | Fault:
    """The day a date column of a row holds (``read_day``), or a workbook's number cell: a date whose cell
    lost its date format, days since the workbook's day 0 (1899-12-30, or 1904-01-01 for a Mac workbook)."""
    index = table.columns.get(column) if table is not None else None
    cell = cells[index] if index is not None and index < len(cells) else None
    if isinstance(cell, int | float) and not isinstance(cell, bool) and table.epoch is not None:
        if not 1 <= cell < MAX_SERIAL + 1:  # a fraction is a time of day, left aside as in a text
            return Fault("bad_date", f"{column} {row[column][:20]!r} is not a date: write 2026-12-01, 2026/12/01 "
                         "or 2026年12月1日", column, shown(row[column], 20))
        return table.epoch + timedelta(days=int(cell))
    return read_day(row[column], column)


def read_day(text: str, column: str = "date") -> date | Fault:
    """The day ``text`` writes: ``2026-12-01``, ``2026/12/01``, ``2026.12.01`` or ``2026年12月1日`` (full-width
    digits too; a time of day after it, as a date-and-time cell gives, is left aside), or a Fault saying why
    it is none: digits alone (a date cell that lost its format), a day the calendar does not have, or
    anything else (``12/01/2026`` is December or January depending on who wrote it: never guessed)."""
    normal = unicodedata.normalize("NFKC", text).strip()
    match = _DAY.fullmatch(normal)
    if match is None:
        if normal.isascii() and normal.isdigit():
            return Fault("number_not_date", f"{column} {text[:20]!r} is a number, not a date (the column lost its "
                         "date format): format it as a date, or write 2026-12-01", column, shown(text, 20))
        return Fault("bad_date", f"{column} {text[:20]!r} is not a date: write 2026-12-01, 2026/12/01 or "
                     "2026年12月1日", column, shown(text, 20))
    year, month, day = int(match.group(1)), int(match.group(3) or match.group(5)), int(match.group(4) or match.group(6))
    try:
        return date(year, month, day)
    except ValueError:
        return Fault("no_such_date", f"{column} {text[:20]!r} is not a day of the calendar", column, shown(text, 20))


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class ImportPlan:
    new: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)  # {"worker", "fields": {name: [before, after]}}
    unchanged: list[str] = field(default_factory=list)
    cards_added: list[dict] = field(default_factory=list)
    cards_replaced: list[dict] = field(default_factory=list)
    assigned: list[dict] = field(default_factory=list)  # {"worker", "site"[, "from": entry date, "start": UTC]}
    # {"worker", "site", "from": entry date, "start": UTC, "before": UTC or None, "outside": taps left outside}
    starts_moved: list[dict] = field(default_factory=list)
    terms: list[dict] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    max_workers_per_site: int = MAX_WORKERS_PER_SITE

    def report(self) -> dict:
        return {"new": [w["worker"] for w in self.new], "changed": self.changed, "unchanged": len(self.unchanged),
                "cards_added": self.cards_added, "cards_replaced": self.cards_replaced,
                "assigned": self.assigned, "starts_moved": self.starts_moved, "terms": self.terms}


def plan_import(rows: list[dict], store, *, max_workers_per_site: int = MAX_WORKERS_PER_SITE,
                voice: Voice | None = None) -> ImportPlan:
    """What importing ``rows`` would change, compared with the registry now (nothing is written).
    TooManyWorkers when it would assign a site more workers than ``max_workers_per_site``.

    An entry date (进场日期) starts the worker's assignment to the row's site at the beginning of that day in
    the site's zone: a new assignment from then, or, for a worker assigned there now, the same assignment
    starting then instead (the file says when the worker entered; the office's later file corrects an
    earlier one), with the taps a later start leaves outside any assignment counted."""
    voice = voice or Voice("")
    plan = ImportPlan()
    workers = {w["worker"]: w for w in store.workers()}
    payees = store.payees()
    holders = {c["uid"]: w["worker"] for w in workers.values() for c in w["cards"] if c["valid_to"] is None}
    sites = {s["site"]: s for s in store.sites()}
    terms: dict[str, list[dict]] = {}
    for row in store.wage_terms():
        terms.setdefault(row["worker"], []).append(row)
    for row in rows:
        worker, where, line = row["worker"], row["where"], row.get("line")
        if row.get("site") and row["site"] not in sites:
            plan.problems.append(voice.row(where, line, Fault(
                "unknown_site", f"site {row['site']} does not exist (collector site add)", "site", shown(row["site"]))))
            continue
        card = row.get("card")
        if card and holders.get(card, worker) != worker:
            plan.problems.append(voice.row(where, line, Fault(
                "card_held", f"card {card} is held by worker {holders[card]} (revoke it first)", "card", card,
                {"holder": holders[card]})))
            continue
        start = None
        if row.get("entry_date"):
            start = day_start(date.fromisoformat(row["entry_date"]), _zone(sites[row["site"]]))
        current = workers.get(worker)
        if current is None:
            plan.new.append(row)
            if card:
                plan.cards_added.append({"worker": worker, "card": card})
            if row.get("site"):
                plan.assigned.append({"worker": worker, "site": row["site"],
                                      **({"from": row["entry_date"], "start": start} if start else {})})
            if row.get("rate_fen"):
                plan.terms.append({"worker": worker, "basis": row["basis"], "rate_fen": row["rate_fen"],
                                   "from": row["rate_from"]})
            continue
        if start is not None:
            fault = _entry_fault(store, row, start, sites[row["site"]], plan)
            if fault is not None:
                plan.problems.append(voice.row(where, line, fault))
                continue
        fields = {}
        for column in ("name", "employer", "team", "trade"):
            if row.get(column) and row[column] != (current.get(column) or ""):
                fields[column] = [current.get(column), row[column]]
        payee = payees.get(worker, {})
        for column in ("id_number", "phone", "bank_account", "bank_name"):
            if row.get(column) and row[column] != (payee.get(column) or ""):
                fields[column] = [payee.get(column), row[column]]
        held = [c["uid"] for c in current["cards"] if c["valid_to"] is None]
        if card and card not in held:
            (plan.cards_replaced if held else plan.cards_added).append(
                {"worker": worker, "card": card, **({"replaces": held} if held else {})})
        if row.get("site") and row["site"] not in current.get("sites", []):
            plan.assigned.append({"worker": worker, "site": row["site"],
                                  **({"from": row["entry_date"], "start": start} if start else {})})
        if row.get("rate_fen"):
            in_force = [t for t in terms.get(worker, []) if t["effective_from"] <= row["rate_from"]]
            now = in_force[-1] if in_force else None
            if now is None or (now["basis"], now["rate_fen"]) != (row["basis"], row["rate_fen"]):
                plan.terms.append({"worker": worker, "basis": row["basis"], "rate_fen": row["rate_fen"],
                                   "from": row["rate_from"]})
        touched = fields or any(entry["worker"] == worker for entry in plan.cards_added + plan.cards_replaced
                                + plan.assigned + plan.terms + plan.starts_moved)
        if fields:
            plan.changed.append({"worker": worker, "fields": fields})
        if not touched:
            plan.unchanged.append(worker)
    now = Counter(site for w in workers.values() for site in set(w["sites"]))
    check_room(now, Counter(entry["site"] for entry in plan.assigned), max_workers_per_site, what="this file")
    plan.max_workers_per_site = max_workers_per_site
    return plan


def _zone(site: Mapping) -> ZoneInfo:
    from collector.localtime import zone

    return zone(site["timezone"])


def _entry_fault(store, row: dict, start: str, site: Mapping, plan: ImportPlan) -> Fault | None:
    """For a registered worker with an entry date at ``site``: plan the start of their assignment there
    (a new one, or the open one moved), or say why it cannot be (an earlier assignment there ends after it)."""
    worker, site_id = row["worker"], site["site"]
    held = store.assignments(worker=worker, site=site_id)
    open_now = next((a for a in held if a["valid_to"] is None), None)
    for earlier in held:
        if earlier is not open_now and earlier["valid_to"] is not None and earlier["valid_to"] > start:
            until = _local(earlier["valid_to"], _zone(site))
            return Fault("entry_overlaps", f"{worker} was assigned to {site_id} until {until} (the site's time): an "
                         f"entry date of {row['entry_date']} falls before that", "entry_date", row["entry_date"],
                         {"worker": worker, "site": site_id, "until": until})
    if open_now is not None and open_now["valid_from"] != start:
        # Taps from the old start (or the beginning) up to a later new one are left outside any assignment.
        later = open_now["valid_from"] is None or open_now["valid_from"] < start
        outside = store.card_taps(worker, site_id, start=open_now["valid_from"], end=start) if later else 0
        plan.starts_moved.append({"worker": worker, "site": site_id, "from": row["entry_date"], "start": start,
                                  "before": open_now["valid_from"], "outside": outside})
    return None


def _local(utc_text: str, tz: ZoneInfo) -> str:
    """A stored UTC instant as the site reads it, to the minute: 2026-11-30 00:00."""
    from collector.localtime import local_text

    shown_text = local_text(utc_text, tz)
    return shown_text[:16].replace("T", " ") if shown_text else utc_text


def check_room(assigned: Mapping[str, int], adding: Mapping[str, int], limit: int, *, what: str) -> None:
    """TooManyWorkers naming the figures when ``adding`` workers to a site that has ``assigned`` now would
    take it past ``limit`` (``[limits] max_workers_per_site``)."""
    for site in sorted(adding):
        if adding[site] and assigned.get(site, 0) + adding[site] > limit:
            raise TooManyWorkers(f"site {site} would have {assigned.get(site, 0) + adding[site]} workers assigned "
                                 f"({assigned.get(site, 0)} now and {adding[site]} more from {what}), more than the "
                                 f"{limit} a site may have ([limits] max_workers_per_site): nothing changed")


def assigned_now(store, site: str) -> int:
    """Workers assigned to ``site`` now (an assignment not ended)."""
    return len({a["worker"] for a in store.assignments(site=site) if a["valid_to"] is None})


def apply_import(plan: ImportPlan, store, *, by: str, now: str, progress=None) -> None:
    """Write the plan in one transaction (all of it or nothing). The sites it assigns workers to are
    locked and counted again inside it, so that imports run at once cannot together pass the bound."""
    with store.transaction():
        adding = Counter(entry["site"] for entry in plan.assigned)
        for site in sorted(adding):
            store.lock_site(site)
        check_room({site: assigned_now(store, site) for site in adding}, adding, plan.max_workers_per_site,
                   what="this file")
        for row in plan.new:
            store.add_worker(row["worker"], name=row["name"], employer=row.get("employer") or None,
                             team=row.get("team") or None, trade=row.get("trade") or None, by=by)
            if progress is not None:
                progress(1)
        for change in plan.changed:
            fields = {k: v[1] for k, v in change["fields"].items()}
            store.edit_worker(change["worker"], name=fields.get("name"), employer=fields.get("employer"),
                              team=fields.get("team"), trade=fields.get("trade"), by=by)
            payee = {k: fields[k] for k in ("id_number", "phone", "bank_account", "bank_name") if k in fields}
            if payee:
                store.set_payee(change["worker"], **payee)
            if progress is not None:
                progress(1)
        for row in plan.new:
            payee = {k: row[k] for k in ("id_number", "phone", "bank_account", "bank_name") if row.get(k)}
            if payee:
                store.set_payee(row["worker"], **payee)
        for entry in plan.cards_added:
            store.assign_card(entry["card"], entry["worker"])
        for entry in plan.cards_replaced:
            for old in entry["replaces"]:
                store.revoke_card(old, at=now)
            store.assign_card(entry["card"], entry["worker"], valid_from=now)
        new_workers = {row["worker"] for row in plan.new}
        for entry in plan.assigned:
            # From the entry date when the file gives one; else a new worker belongs to the site from the
            # beginning (as a new card does), an existing one from now.
            store.assign(entry["worker"], entry["site"], by=by,
                         valid_from=entry.get("start") or (None if entry["worker"] in new_workers else now))
        for entry in plan.starts_moved:
            store.move_assignment_start(entry["worker"], entry["site"], valid_from=entry["start"], by=by)
        for entry in plan.terms:
            store.set_wage_terms(entry["worker"], basis=entry["basis"], rate_fen=entry["rate_fen"],
                                 effective_from=entry["from"], by=by)


# ---------------------------------------------------------------------------------------------- times


def parse_moment(text: str, tz: ZoneInfo | None = None) -> str:
    """An ISO time as wire UTC text. With an offset (``2026-11-28T08:00+08:00``) it is what it says;
    without one it is read in ``tz`` (the site's zone) when there is one, and refused otherwise: which
    zone was meant is a guess we do not make. A date alone is the start of that day."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{text!r} is not an ISO time such as 2026-11-28T08:00:00+08:00") from None
    if moment.tzinfo is None:
        if tz is None:
            raise InputError(f"{text!r} has no UTC offset (add +08:00, Z, ...)")
        moment = moment.replace(tzinfo=tz)
    try:
        return format_time(moment)
    except OverflowError:  # 0001-01-01T00:00+08:00 has no UTC time
        raise InputError(f"{text!r} is outside the times this system can hold") from None


def day_start(day: date, tz: ZoneInfo) -> str:
    """The UTC time a local date begins at."""
    return format_time(datetime.combine(day, time(0), tzinfo=tz))
