"""Registry input checks: worker CSV files, ids and user-given times."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime

from gate_agent.protocol import format_time, normalise_uid, valid_id

CSV_COLUMNS = ("worker", "name", "card", "employer")


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


def read_worker_csv(path: str, held: dict[str, str]) -> tuple[list[dict], list[CsvProblem]]:
    """Rows and every problem found; the caller refuses the whole file if there is any problem.

    ``held`` maps card UIDs to the worker holding them now (a card cannot move silently).
    """
    rows: list[dict] = []
    problems: list[CsvProblem] = []
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as error:
        return [], [CsvProblem(0, f"cannot read {path}: {error.strerror}")]
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in CSV_COLUMNS[:3] if c not in header]
        if missing:
            return [], [CsvProblem(1, f"header lacks column(s) {', '.join(missing)} "
                                      f"(expected {','.join(CSV_COLUMNS)})")]
        reader.fieldnames = header
        seen_cards: dict[str, tuple[str, int]] = {}
        seen_workers: dict[str, tuple[str, int]] = {}
        try:
            for row in reader:
                line = reader.line_num
                row = {k: (v or "").strip() for k, v in row.items() if k is not None}
                problem = _check_row(row, held, seen_cards, seen_workers, line)
                if problem:
                    problems.append(CsvProblem(line, problem))
                    continue
                rows.append({"worker": row["worker"], "name": row["name"], "card": row["card"],
                             "employer": row.get("employer") or None})
        except (csv.Error, UnicodeDecodeError) as error:
            problems.append(CsvProblem(reader.line_num, f"unreadable: {error}"))
    if not rows and not problems:
        problems.append(CsvProblem(1, "no rows"))
    return rows, problems


def _check_row(row, held, seen_cards, seen_workers, line) -> str | None:
    if not valid_id(row.get("worker", "")):
        return f"worker id {row.get('worker')!r} is not an id (letters, digits, '_', '.', '-')"
    if not row.get("name"):
        return "name is empty"
    try:
        row["card"] = normalise_uid(row.get("card", ""))
    except ValueError as error:
        return str(error)
    card, worker = row["card"], row["worker"]
    if card in seen_cards and seen_cards[card][0] != worker:
        return f"card {card} is also given to {seen_cards[card][0]} on line {seen_cards[card][1]}"
    if held.get(card, worker) != worker:
        return f"card {card} is held by worker {held[card]}"
    if worker in seen_workers and seen_workers[worker][0] != row["name"]:
        return f"worker {worker} has another name on line {seen_workers[worker][1]}"
    seen_cards[card] = (worker, line)
    seen_workers[worker] = (row["name"], line)
    return None


def parse_moment(text: str) -> str:
    """An ISO time with an offset (``2026-11-28T08:00+08:00``) as wire UTC text; a bare local time is
    refused: which zone was meant is a guess we do not make."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO time such as 2026-11-28T08:00:00+08:00") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (add +08:00, Z, ...)")
    try:
        return format_time(moment)
    except OverflowError:  # 0001-01-01T00:00+08:00 has no UTC time
        raise ValueError(f"{text!r} is outside the times this system can hold") from None
