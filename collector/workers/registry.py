"""Registry input: the worker file bank ops import, ids, and the times people type.

A worker file is a table as collector/tabular.py reads it: CSV in UTF-8 (with or without a BOM) or
GB18030/GBK (what Excel on Chinese Windows writes), or an XLSX workbook, with English or Chinese headers
and any title rows above them. Importing is an explicit upsert: each row says what a worker
is now; the plan lists what is new, what changes and what stays, and applies all of it or nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from collector.errors import InputError
from collector.identity import PAYEE_CHECKS, PayeeError
from collector.money import MoneyError, parse_yuan, rate_problem
from collector.tabular import HEADER_WITHIN, Problem, TooManyRows, read_table
from collector.text import NAME_MAX_CHARS, TextError, entered
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
}
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
    problems: list[Problem]
    encoding: str = ""
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    read_columns: dict[str, str] = field(default_factory=dict)  # field -> the file's header for it


def read_worker_file(path: str, *, today: date | None = None, sheet: str | None = None,
                     max_workers: int = MAX_WORKERS_PER_FILE) -> WorkerFile:
    """Every row, checked on its own; every problem with its line (or worksheet row). TableError for a
    file that is not a worker file at all; TooManyWorkers for one with more than ``max_workers`` rows,
    refused at the first row past it (the rest is never parsed), before anything is planned or applied."""
    # Blank rows cost little but are rows to walk: as many again as the workers, and the title rows.
    try:
        table = read_table(path, fields=COLUMNS, identify=("worker", "name"), identifiers=IDENTIFIERS,
                           dates=("rate_from",), sheet=sheet, totals="skip", what="a worker file",
                           max_bytes=MAX_BYTES, max_records=max_workers, max_rows=2 * max_workers + 2 * HEADER_WITHIN)
        result = WorkerFile([], table.problems, table.encoding, table.ignored_columns, table.notes,
                            dict(table.read_columns))
        _read_rows(table, result, today or date.today())
    except TooManyRows as error:
        counted = f"{error.limit} rows, blank ones included" if error.blank else f"{max_workers} workers"
        raise TooManyWorkers(f"{path}: more than {counted}: one file lists at most {max_workers} workers "
                             "([limits] max_workers_per_file); nothing imported, split the file") from None
    return result


def _read_rows(table, result: WorkerFile, today: date) -> None:
    seen_workers: dict[str, str] = {}
    seen_cards: dict[str, tuple[str, str]] = {}
    for read in table:
        row = dict(read.values)
        problem = _check(row, today)
        if problem is None and row["worker"] in seen_workers:
            problem = f"worker {row['worker']} is also on {seen_workers[row['worker']]}"
        if problem is None and row.get("card") and row["card"] in seen_cards:
            problem = f"card {row['card']} is also given to {seen_cards[row['card']][0]} on " \
                      f"{seen_cards[row['card']][1]}"
        if problem:
            result.problems.append(read.problem(problem))
            continue
        seen_workers[row["worker"]] = read.position
        if row.get("card"):
            seen_cards[row["card"]] = (row["worker"], read.position)
        row["where"] = read.where
        result.rows.append(row)


def _check(row: dict, today: date) -> str | None:
    """Normalise the row in place; why it cannot be imported, or None."""
    if not valid_id(row.get("worker", "")):
        return f"worker id {row.get('worker', '')[:40]!r} is not an id (letters, digits, '_', '.', '-')"
    try:
        row["name"] = entered(row.get("name"), what="name", limit=NAME_MAX_CHARS)
        for column in ("employer", "team", "trade", "bank_name"):
            row[column] = entered(row.get(column), what=column, limit=NAME_MAX_CHARS, optional=True) or ""
    except TextError as error:
        return str(error)
    if row.get("card"):
        try:
            row["card"] = normalise_uid(row["card"])
        except ValueError as error:
            return str(error)
    if row.get("site") and not valid_id(row["site"]):
        return f"site {row['site'][:40]!r} is not a site id"
    try:  # the store checks them again on writing: one rule for every path (collector.identity)
        for column, check in PAYEE_CHECKS.items():
            if row.get(column):
                row[column] = check(row[column])
    except PayeeError as error:
        return str(error)
    basis, rate = row.get("basis"), row.get("rate_yuan")
    if basis or rate:
        if not (basis and rate):
            return "basis and rate_yuan go together"
        if basis.lower() not in _BASIS:
            return f"basis {basis[:20]!r} is not day/日 or hour/时"
        row["basis"] = _BASIS[basis.lower()]
        try:
            row["rate_fen"] = parse_yuan(rate, what="rate_yuan")
        except MoneyError as error:
            return str(error)
        if row["rate_fen"] <= 0:
            return "rate_yuan must be above 0"
        if rate_problem(row["basis"], row["rate_fen"]):
            return f"rate_yuan: {rate_problem(row['basis'], row['rate_fen'])}"
        try:
            row["rate_from"] = date.fromisoformat(row["rate_from"]).isoformat() if row.get("rate_from") \
                else today.isoformat()
        except ValueError:
            return f"rate_from {row['rate_from'][:20]!r} is not a date YYYY-MM-DD"
    return None


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class ImportPlan:
    new: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)  # {"worker", "fields": {name: [before, after]}}
    unchanged: list[str] = field(default_factory=list)
    cards_added: list[dict] = field(default_factory=list)
    cards_replaced: list[dict] = field(default_factory=list)
    assigned: list[dict] = field(default_factory=list)
    terms: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    max_workers_per_site: int = MAX_WORKERS_PER_SITE

    def report(self) -> dict:
        return {"new": [w["worker"] for w in self.new], "changed": self.changed, "unchanged": len(self.unchanged),
                "cards_added": self.cards_added, "cards_replaced": self.cards_replaced,
                "assigned": self.assigned, "terms": self.terms}


def plan_import(rows: list[dict], store, *, max_workers_per_site: int = MAX_WORKERS_PER_SITE) -> ImportPlan:
    """What importing ``rows`` would change, compared with the registry now (nothing is written).
    TooManyWorkers when it would assign a site more workers than ``max_workers_per_site``."""
    plan = ImportPlan()
    workers = {w["worker"]: w for w in store.workers()}
    payees = store.payees()
    holders = {c["uid"]: w["worker"] for w in workers.values() for c in w["cards"] if c["valid_to"] is None}
    sites = {s["site"] for s in store.sites()}
    terms: dict[str, list[dict]] = {}
    for row in store.wage_terms():
        terms.setdefault(row["worker"], []).append(row)
    for row in rows:
        worker, where = row["worker"], row["where"]
        if row.get("site") and row["site"] not in sites:
            plan.problems.append(Problem(where, f"site {row['site']} does not exist (collector site add)"))
            continue
        card = row.get("card")
        if card and holders.get(card, worker) != worker:
            plan.problems.append(Problem(where, f"card {card} is held by worker {holders[card]} (revoke it first)"))
            continue
        current = workers.get(worker)
        if current is None:
            plan.new.append(row)
            if card:
                plan.cards_added.append({"worker": worker, "card": card})
            if row.get("site"):
                plan.assigned.append({"worker": worker, "site": row["site"]})
            if row.get("rate_fen"):
                plan.terms.append({"worker": worker, "basis": row["basis"], "rate_fen": row["rate_fen"],
                                   "from": row["rate_from"]})
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
            plan.assigned.append({"worker": worker, "site": row["site"]})
        if row.get("rate_fen"):
            in_force = [t for t in terms.get(worker, []) if t["effective_from"] <= row["rate_from"]]
            now = in_force[-1] if in_force else None
            if now is None or (now["basis"], now["rate_fen"]) != (row["basis"], row["rate_fen"]):
                plan.terms.append({"worker": worker, "basis": row["basis"], "rate_fen": row["rate_fen"],
                                   "from": row["rate_from"]})
        touched = fields or any(entry["worker"] == worker for entry in
                                plan.cards_added + plan.cards_replaced + plan.assigned + plan.terms)
        if fields:
            plan.changed.append({"worker": worker, "fields": fields})
        if not touched:
            plan.unchanged.append(worker)
    now = Counter(site for w in workers.values() for site in set(w["sites"]))
    check_room(now, Counter(entry["site"] for entry in plan.assigned), max_workers_per_site, what="this file")
    plan.max_workers_per_site = max_workers_per_site
    return plan


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
            # A new worker belongs to the site from the beginning (as a new card does); an existing one from now.
            store.assign(entry["worker"], entry["site"], by=by,
                         valid_from=None if entry["worker"] in new_workers else now)
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
