"""A bank's return for a payment batch, read into entries for collector/payments.record_return: its table
(columns end_to_end_id, status, voucher, date, reason and optionally amount; English or Chinese
headers; a CSV in UTF-8 or GBK/GB18030, or an XLSX, read by collector/tabular.py) or an ISO 20022
payment status report, pain.002.001.03, .10 or .12 (validated against the official XSD first: .03 and
.12 against their own; .10, whose schema is not kept, against .12's, which the elements read here did not
change, so that a .10 report is read only when it holds nothing .12 does not know).

A table says paid or failed in the words banks' returns use (交易成功, 处理成功, 交易失败 ...; a status
still in progress, 处理中, is noted and not recorded), dates a payment with or without a time of day
(``2026-11-20 10:23:45``: the bank's date, as written), and writes amounts with or without thousands
separators (``1,440.00``).

The file comes from outside: every value is checked, and every problem is collected with where it is,
so that the whole file is refused at once, one line per problem, and nothing of it is recorded.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import xml.etree.ElementTree as ET
from datetime import date

from collector.money import MoneyError, parse_yuan
from collector.tabular import read_table
from collector.wages.batchfile import validation_problem
from collector.wages.payments import PaymentError
from gate_agent.protocol import quoted

#: A bank's return is small; anything larger is not one.
MAX_BYTES = 16 * 1024 * 1024
#: A bank's payment reference (voucher) is short; a longer one is refused, never cut.
MAX_VOUCHER = 100
PAIN002 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.{}"
#: The pain.002 versions read -> the version whose kept schema validates it (collector/wages/iso20022/).
PAIN002_VERSIONS = {"03": "03", "10": "12", "12": "12"}
#: Field -> the headers that mean it (compared as collector/tabular.header_key compares them).
HEADERS = {
    "end_to_end_id": ("end to end id", "e2e id", "业务参考号", "端到端编号", "端到端标识"),
    "status": ("status", "状态", "处理状态", "交易状态"),
    "voucher": ("voucher", "凭证号", "银行凭证号", "银行流水号"),
    "date": ("date", "日期", "交易日期", "付款日期"),
    "reason": ("reason", "原因", "失败原因"),
    "amount": ("amount", "金额"),
}
#: What a bank's table says of a credit (compared after ``_word``: no spaces, case or full width).
STATUSES = {
    **dict.fromkeys(("paid", "success", "successful", "succeeded", "成功", "交易成功", "处理成功", "支付成功",
                     "付款成功", "转账成功", "入账成功", "代发成功", "已成功", "已支付", "已入账"), "paid"),
    **dict.fromkeys(("failed", "failure", "fail", "rejected", "失败", "交易失败", "处理失败", "支付失败", "付款失败",
                     "转账失败", "入账失败", "代发失败", "已失败", "已拒绝", "拒绝"), "failed"),
}
#: Still at the bank: noted, recorded nowhere (the next return settles it).
IN_PROGRESS = ("pending", "processing", "处理中", "交易处理中", "银行处理中", "待处理", "已受理", "已提交", "未处理")
#: pain.002 transaction statuses that settle a credit; the others (ACTC, ACCP, ACSP, PDNG...) are on the way.
PAIN002_FINAL = {"ACSC": "paid", "ACCC": "paid", "RJCT": "failed"}
_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})|(\d{4})(\d{2})(\d{2})|(\d{4})年(\d{1,2})月(\d{1,2})日")
#: A time of day after the date (a space or a T between): read and left, the date is the bank's.
_TIME = re.compile(r"(?:[ T]+(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?|[ T]?(?:[01]\d|2[0-3])[0-5]\d[0-5]\d)"
                   r"(?:Z|[+-]\d{2}:?\d{2})?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NAMESPACE = re.compile(rb'xmlns(?::[A-Za-z_][\w.-]*)?\s*=\s*["\']urn:iso:std:iso:20022:tech:xsd:pain\.002\.001\.(\d{2})["\']')


def read(data: bytes, source: str, *, sheet: str | None = None) -> tuple[str, list[dict], list[str]]:
    """(kind, entries, notes): ``csv``, ``xlsx`` or ``pain.002``; an entry that cannot be read is
    ``{"where", "problem"}`` (record_return refuses the file with it and every other problem); notes are
    what is recorded nowhere (still in progress at the bank). PaymentError or TableError for a file that
    is not a return; ``sheet`` names the worksheet of a workbook."""
    if len(data) > MAX_BYTES:
        raise PaymentError(f"{source}: {len(data)} bytes is not a bank's return (at most {MAX_BYTES})")
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "pain.002", *_pain002(data, source)
    return _table(data, source, sheet)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _day(text: str) -> str | None:
    text = text.strip()
    match = _DATE.match(text)
    if not match or not (match.end() == len(text) or _TIME.fullmatch(text[match.end():])):
        return None
    year, month, day_of_month = (int(group) for group in match.groups() if group is not None)
    try:
        day = date(year, month, day_of_month)
    except ValueError:
        return None
    return day.isoformat() if 2000 <= day.year <= 2100 else None


def _table(data: bytes, source: str, sheet: str | None) -> tuple[str, list[dict], list[str]]:
    table = read_table(data, name=source, fields=HEADERS, identify=("end_to_end_id", "status"),
                       identifiers=("end_to_end_id", "voucher"), dates=("date",), date_times=("date",), sheet=sheet,
                       totals="skip",
                       what="a bank's return", max_bytes=MAX_BYTES)
    entries = []
    for row in table:
        entry, problem = _entry(row.where, row.values)
        if problem:
            table.problems.append(row.problem(problem))
        elif "in_progress" in entry:
            table.notes.append(f"{entry['end_to_end_id']}: {entry['in_progress']} (still in progress at the bank; "
                               "not recorded)")
        else:
            entries.append(entry)
    # The problems (the tables' and the entries') in the order of the lines, before the credits.
    problems = [{"where": problem.where, "problem": str(problem)} for problem in table.problems]
    return table.format, problems + entries, table.notes


def _entry(where: str, values: dict) -> tuple[dict, str | None]:
    """The entry of a row, or why it cannot be one."""
    e2e = values.get("end_to_end_id") or ""
    if not e2e:
        return {}, "no end-to-end id"
    word = _word(values.get("status") or "")
    if word in IN_PROGRESS:
        return {"where": where, "end_to_end_id": e2e, "in_progress": values.get("status")}, None
    status = STATUSES.get(word)
    if status is None:
        return {}, f"{e2e}: status {quoted(values.get('status'))} is not paid (交易成功) or failed (交易失败)"
    entry = {"where": where, "end_to_end_id": e2e, "status": status, "voucher": None, "date": None, "reason": None,
             "amount_fen": None}
    if values.get("amount"):
        amount = values["amount"].strip()
        if _THOUSANDS.fullmatch(amount):
            amount = amount.replace(",", "")  # 1,440.00: a separator every three digits, nothing else
        try:
            entry["amount_fen"] = parse_yuan(amount, what="the amount")
        except MoneyError as error:
            return {}, f"{e2e}: {error}"
    if status == "paid":
        if not values.get("voucher"):
            return {}, f"{e2e} is paid but has no voucher (the bank's payment reference)"
        if len(values["voucher"]) > MAX_VOUCHER:
            return {}, f"{e2e}: the voucher is longer than {MAX_VOUCHER} characters: not a bank's payment reference"
        entry["voucher"] = values["voucher"]
        entry["date"] = _day(values.get("date") or "")
        if entry["date"] is None:
            return {}, f"{e2e} is paid but its date {quoted(values.get('date'))} is not YYYY-MM-DD (a time may follow)"
    else:
        if not values.get("reason"):
            return {}, f"{e2e} failed but the return gives no reason"
        entry["reason"] = values["reason"][:500]
    return entry, None


# ================================================================================== pain.002


def _word(text: str) -> str:
    """A status as compared: full-width forms as their ASCII, without spaces, in lower case."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


def _pain002(data: bytes, source: str) -> tuple[list[dict], list[str]]:
    versions = {match.group(1).decode() for match in _NAMESPACE.finditer(data[:4096])}
    if len(versions) != 1 or not versions <= PAIN002_VERSIONS.keys():
        raise PaymentError(f"{source}: not a pain.002 payment status report this system reads (pain.002.001."
                           + ", .".join(PAIN002_VERSIONS) + "): "
                           + (f"its namespace is pain.002.001.{', .'.join(sorted(versions))}" if versions
                              else "no pain.002 namespace"))
    (version,) = versions
    kept = PAIN002_VERSIONS[version]
    checked = ""
    if kept != version:
        # No schema of this version is kept: read as the next one kept, whose schema did not change the
        # elements read here (the namespace's name is all that is replaced); what it does not know is refused.
        data = data.replace(PAIN002.format(version).encode(), PAIN002.format(kept).encode())
        checked = f" (checked against pain.002.001.{kept}.xsd)"
    problem = validation_problem(data, f"pain.002.001.{kept}.xsd")
    if problem:
        raise PaymentError(f"{source}: not a valid pain.002.001.{version} payment status report{checked}: {problem}")
    root = ET.fromstring(data)
    ns = {"p": PAIN002.format(kept)}
    report = root.find("p:CstmrPmtStsRpt", ns)
    message = report.findtext("p:GrpHdr/p:MsgId", namespaces=ns)
    made = (report.findtext("p:GrpHdr/p:CreDtTm", namespaces=ns) or "")[:10]
    group = report.find("p:OrgnlGrpInfAndSts", ns)
    batch_id = group.findtext("p:OrgnlMsgId", namespaces=ns)
    entries, notes = [], []

    def reason_of(element: ET.Element) -> str:
        parts = []
        for info in element.findall("p:StsRsnInf", ns):
            code = info.findtext("p:Rsn/p:Cd", namespaces=ns) or info.findtext("p:Rsn/p:Prtry", namespaces=ns)
            extra = " ".join(t.text or "" for t in info.findall("p:AddtlInf", ns)).strip()
            parts.append(" ".join(p for p in (code, extra) if p))
        return "; ".join(p for p in parts if p) or "rejected (no reason given)"

    transactions = report.findall("p:OrgnlPmtInfAndSts/p:TxInfAndSts", ns)
    for number, tx in enumerate(transactions, start=1):
        e2e = tx.findtext("p:OrgnlEndToEndId", namespaces=ns)
        where = f"{source}: transaction {number}"
        status = tx.findtext("p:TxSts", namespaces=ns)
        if not e2e:
            entries.append({"where": where, "problem": f"{where}: no OrgnlEndToEndId"})
            continue
        if status not in PAIN002_FINAL:
            notes.append(f"{e2e}: {status or 'no status'} (still in progress at the bank; not recorded)")
            continue
        amount = tx.find("p:OrgnlTxRef/p:Amt/p:InstdAmt", ns)
        entry = {"where": where, "end_to_end_id": e2e, "status": PAIN002_FINAL[status], "voucher": None,
                 "date": None, "reason": None, "amount_fen": None, "in_batch": batch_id}
        if amount is not None:
            try:
                entry["amount_fen"] = parse_yuan(amount.text or "", what="the amount")
            except MoneyError as error:
                entries.append({"where": where, "problem": f"{where}: {e2e}: {error}"})
                continue
            if amount.get("Ccy") != "CNY":
                entries.append({"where": where, "problem": f"{where}: {e2e} is in {quoted(amount.get('Ccy'))}, not CNY"})
                continue
        if entry["status"] == "paid":
            entry["voucher"] = (tx.findtext("p:AcctSvcrRef", namespaces=ns) or tx.findtext("p:ClrSysRef", namespaces=ns)
                                or f"pain.002 {message}")
            entry["date"] = _day((tx.findtext("p:AccptncDtTm", namespaces=ns) or "")[:10]) or _day(made)
            if entry["date"] is None:
                entries.append({"where": where, "problem": f"{where}: {e2e} is paid, but the report gives no date"})
                continue
        else:
            entry["reason"] = reason_of(tx)[:500]
        entries.append(entry)
    if not transactions:
        # A status for the whole batch (or its one payment information block) and no transaction.
        level = report.find("p:OrgnlPmtInfAndSts", ns)
        status = (level.findtext("p:PmtInfSts", namespaces=ns) if level is not None else None) \
            or group.findtext("p:GrpSts", namespaces=ns)
        if status in PAIN002_FINAL:
            entry = {"where": f"{source}: the report", "batch_id": batch_id, "status": PAIN002_FINAL[status], "amount_fen": None,
                     "voucher": None, "date": None, "reason": None}
            if entry["status"] == "paid":
                entry["voucher"], entry["date"] = f"pain.002 {message}", _day(made)
            else:
                entry["reason"] = reason_of(level if level is not None and level.find("p:StsRsnInf", ns) is not None
                                            else group)[:500]
            entries.append(entry)
        else:
            notes.append(f"batch {batch_id}: {status or 'no status'} (still in progress at the bank; not recorded)")
    return entries, notes
