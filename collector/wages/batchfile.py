"""The payment batch as the bank takes it: a Chinese bulk-payment file (代发工资) as CSV or XLSX, in the
columns of the bank's template (collector/wages/batchtemplate.py), or ISO 20022 pain.001.001.09
(CustomerCreditTransferInitiationV09), built from a recorded batch only, so that the same batch always
gives the same bytes.

The CSV and the XLSX open with the control totals (总笔数, 总金额) the bank checks the file against. In the
XLSX every identifier (account, ID number, CNAPS code, phone, reference) is a text cell: a CSV opened and
saved again in a spreadsheet turns a 19-digit account into 6.22202E+18, and a workbook does not. Where a
payee's branch is known (its CNAPS code, province, city: `worker payee --bank-code`, kept for the account
the approved line pays) the files name it, and the pain.001 names the creditor's agent by it
(``ClrSysMmbId``, clearing system CNAPS); the initiating party is identified by the special wage account.

This is the one place where ID numbers and account numbers appear whole: the file is written 0600.
A pain.001 is validated against the official XSD (collector/wages/iso20022/) before anyone may write it.
"""

from __future__ import annotations

import functools
import io
import re
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from collector.export import BOM, to_csv
from collector.money import yuan
from collector.wages.batchtemplate import DEFAULT, IDENTIFIERS, Template
from collector.wages.payments import Batch, PaymentError, created_time

SCHEMAS = Path(__file__).parent / "iso20022"
PAIN001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
FORMATS = ("csv", "xlsx", "pain001")
ENCODINGS = ("utf-8", "gbk")
PURPOSE = "工资"
#: The control totals above the header of a CSV or XLSX batch: the credits and their sum.
CONTROL_TOTALS = ("总笔数", "总金额")
#: The clearing system a Chinese branch code belongs to (ISO 20022 ExternalClearingSystemIdentification1Code).
CNAPS = "CNAPS"


def remark(batch: dict, worker: str) -> str:
    return f"{batch['site']}/{batch['period']}/{worker} {PURPOSE}"


def render(batch: Batch, fmt: str, *, timezone: str, encoding: str = "utf-8", template: Template = DEFAULT,
           routing: dict[str, dict] | None = None) -> bytes:
    """The batch's file. ``routing`` is ``Store.payee_routing`` of its workers (the payees' branches)."""
    if fmt == "csv":
        return render_csv(batch, encoding=encoding, template=template, routing=routing)
    if fmt == "xlsx":
        return render_xlsx(batch, template=template, routing=routing)
    if fmt == "pain001":
        return render_pain001(batch, timezone=timezone, routing=routing)
    raise PaymentError(f"format {fmt!r}: one of {', '.join(FORMATS)}")


def branch(credit: dict, routing: dict[str, dict] | None) -> dict:
    """The payee's branch (``bank_code``, ``bank_province``, ``bank_city``) when it was set for the
    account the credit pays, else empty: a code kept for an earlier account routes nothing."""
    kept = (routing or {}).get(credit["worker"])
    if kept is None or kept["routed_account"] != credit["line"]["bank_account"]:
        return {}
    return kept


def values(head: dict, credit: dict, routing: dict[str, dict] | None) -> dict[str, str]:
    """Every field a template may name (batchtemplate.FIELDS), for one credit."""
    line, where = credit["line"], branch(credit, routing)
    return {"end_to_end_id": credit["end_to_end_id"], "payer_account": head["payer_account"],
            "payer_name": head["payer_name"], "payer_bank": head["payer_bank"], "payee_name": line["name"],
            "payee_account": line["bank_account"], "payee_bank": line["bank_name"] or "",
            "payee_bank_code": where.get("bank_code") or "", "payee_province": where.get("bank_province") or "",
            "payee_city": where.get("bank_city") or "", "payee_id_number": line["id_number"] or "",
            "payee_phone": line.get("phone") or "", "amount": yuan(credit["amount_fen"]), "currency": "CNY",
            "purpose": PURPOSE, "remark": remark(head, credit["worker"]), "execution_date": head["execution_date"]}


def _rows(batch: Batch, template: Template, routing: dict[str, dict] | None) -> list[dict[str, str]]:
    head = batch.batch
    return [{header: value[field] for header, field in template.columns}
            for value in (values(head, credit, routing) for credit in batch.credits)]


def render_csv(batch: Batch, *, encoding: str = "utf-8", template: Template = DEFAULT,
               routing: dict[str, dict] | None = None) -> bytes:
    """The control totals (总笔数, 总金额: a row of names, a row of values), then one row per credit in the
    batch's order, in the template's columns; UTF-8 with a BOM (what spreadsheets and most banks' upload
    pages recognise) or GBK; amounts in yuan with two decimals; cells neutralised."""
    rows = _rows(batch, template, routing)
    text = to_csv(rows, template.headers).removeprefix(BOM)  # a BOM only where the encoding has one
    if template.control_totals:
        totals = {"总笔数": str(len(rows)), "总金额": yuan(batch.total_fen)}
        text = to_csv([totals], CONTROL_TOTALS).removeprefix(BOM) + text
    if encoding == "utf-8":
        return (BOM + text).encode("utf-8")
    if encoding == "gbk":
        reference = next(header for header, field in template.columns if field == "end_to_end_id")
        for row in rows:
            for column, value in row.items():
                try:
                    (value or "").encode("gbk")
                except UnicodeEncodeError:
                    raise PaymentError(f"{column} of {row[reference]} ({value!r}) has a character GBK cannot hold; "
                                       "write the batch in UTF-8 or XLSX") from None
        return text.encode("gbk")
    raise PaymentError(f"encoding {encoding!r}: one of {', '.join(ENCODINGS)}")


def render_xlsx(batch: Batch, *, template: Template = DEFAULT, routing: dict[str, dict] | None = None) -> bytes:
    """The batch as a workbook, one worksheet: the control totals, the header, a row per credit. Every
    identifier is a text cell (format ``@``) so that no spreadsheet rounds it; amounts are numbers with
    two decimals. The same batch gives the same bytes: the workbook's times are the batch's creation."""
    from gate_agent.extras import require

    openpyxl = require("openpyxl", "bank")
    head = batch.batch
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "代发工资"
    if template.control_totals:
        sheet.append(list(CONTROL_TOTALS))
        sheet.append([len(batch.credits), Decimal(yuan(batch.total_fen))])
        sheet.cell(row=2, column=2).number_format = "0.00"
    sheet.append(list(template.headers))
    for row in _rows(batch, template, routing):
        cells = []
        for header, field in template.columns:
            if field == "amount":
                cell = openpyxl.cell.WriteOnlyCell(sheet, value=Decimal(row[header]))
                cell.number_format = "0.00"
            else:
                cell = openpyxl.cell.WriteOnlyCell(sheet, value=row[header])
                cell.data_type = "s"
                if field in IDENTIFIERS:
                    cell.number_format = "@"
            cells.append(cell)
        sheet.append(cells)
    for index, (_, field) in enumerate(template.columns, start=1):
        width = 24 if field in IDENTIFIERS or field in ("remark", "payee_bank", "payer_name") else 12
        sheet.column_dimensions[openpyxl.utils.get_column_letter(index)].width = width
    made = datetime.fromisoformat(head["created"].replace("Z", "+00:00")).replace(tzinfo=None, microsecond=0)
    workbook.properties.created = workbook.properties.modified = made
    workbook.properties.creator = "collector"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return _fixed_times(buffer.getvalue(), made)


def _fixed_times(data: bytes, made: datetime) -> bytes:
    """The workbook's zip with every part dated ``made``, and its properties' modification time too (a
    zip dates each part with the clock, and openpyxl sets the modification time as it saves)."""
    out = io.BytesIO()
    stamp = (max(1980, made.year), made.month, made.day, made.hour, made.minute, made.second)
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = _MODIFIED.sub(rb"\g<1>" + made.strftime("%Y-%m-%dT%H:%M:%SZ").encode() + rb"\g<2>", content)
            part = zipfile.ZipInfo(info.filename, date_time=stamp)
            part.compress_type = zipfile.ZIP_DEFLATED
            part.external_attr = info.external_attr
            target.writestr(part, content)
    return out.getvalue()


_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def render_pain001(batch: Batch, *, timezone: str, routing: dict[str, dict] | None = None) -> bytes:
    """The batch as pain.001.001.09, one payment information block from the special wage account,
    validated against the XSD (PaymentError when it would not validate: nothing is written). A creditor's
    agent is named by its CNAPS code (``ClrSysMmbId``) where known, with its city and province; the
    initiating party is identified by the special wage account (OrgId, scheme BANK: the relationship the
    payer's bank keeps with it), the one identifier of the payer the approved version freezes."""
    head, credits = batch.batch, batch.credits
    count, total = str(len(credits)), yuan(batch.total_fen)
    ET.register_namespace("", PAIN001)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{PAIN001}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    def path(parent: ET.Element, tags: str, text: str | None = None) -> ET.Element:
        *outer, last = tags.split("/")
        for tag in outer:
            parent = sub(parent, tag)
        return sub(parent, last, text)

    document = ET.Element(f"{{{PAIN001}}}Document")
    root = sub(document, "CstmrCdtTrfInitn")
    group = sub(root, "GrpHdr")
    sub(group, "MsgId", head["batch_id"])
    sub(group, "CreDtTm", created_time(head, timezone))
    sub(group, "NbOfTxs", count)
    sub(group, "CtrlSum", total)
    initiator = sub(group, "InitgPty")
    sub(initiator, "Nm", head["payer_name"])
    other = path(initiator, "Id/OrgId/Othr")
    sub(other, "Id", head["payer_account"])
    path(other, "SchmeNm/Cd", "BANK")
    if head["payer_bank"]:
        sub(other, "Issr", head["payer_bank"][:35])
    info = sub(root, "PmtInf")
    sub(info, "PmtInfId", head["batch_id"])
    sub(info, "PmtMtd", "TRF")
    sub(info, "NbOfTxs", count)
    sub(info, "CtrlSum", total)
    path(info, "PmtTpInf/CtgyPurp/Cd", "SALA")
    path(info, "ReqdExctnDt/Dt", head["execution_date"])
    path(info, "Dbtr/Nm", head["payer_name"])
    account = sub(info, "DbtrAcct")
    path(account, "Id/Othr/Id", head["payer_account"])
    sub(account, "Ccy", "CNY")
    path(info, "DbtrAgt/FinInstnId/Nm", head["payer_bank"])
    for credit in credits:
        line = credit["line"]
        transfer = sub(info, "CdtTrfTxInf")
        path(transfer, "PmtId/EndToEndId", credit["end_to_end_id"])
        path(transfer, "Amt/InstdAmt", yuan(credit["amount_fen"])).set("Ccy", "CNY")
        where = branch(credit, routing)
        if line["bank_name"] or where:
            agent = path(transfer, "CdtrAgt/FinInstnId")
            if where:
                member = sub(agent, "ClrSysMmbId")
                path(member, "ClrSysId/Cd", CNAPS)
                sub(member, "MmbId", where["bank_code"])
            if line["bank_name"]:
                sub(agent, "Nm", line["bank_name"])
            if where and (where["bank_city"] or where["bank_province"]):
                address = sub(agent, "PstlAdr")
                if where["bank_city"]:
                    sub(address, "TwnNm", where["bank_city"])
                if where["bank_province"]:
                    sub(address, "CtrySubDvsn", where["bank_province"])
                sub(address, "Ctry", "CN")
        creditor = sub(transfer, "Cdtr")
        sub(creditor, "Nm", line["name"])
        if line["id_number"]:
            other = path(creditor, "Id/PrvtId/Othr")
            sub(other, "Id", line["id_number"])
            # A resident ID card number: ISO's external code for a national identity number.
            path(other, "SchmeNm/Cd", "NIDN")
        path(transfer, "CdtrAcct/Id/Othr/Id", line["bank_account"])
        path(transfer, "Purp/Cd", "SALA")
        path(transfer, "RmtInf/Ustrd", remark(head, credit["worker"]))
    ET.indent(document, space="  ")
    data = ET.tostring(document, encoding="UTF-8", xml_declaration=True) + b"\n"
    problem = validation_problem(data, "pain.001.001.09.xsd")
    if problem:
        raise PaymentError(f"the pain.001 for batch {head['batch_id']} does not validate against "
                           f"pain.001.001.09.xsd, so it is not written: {problem}")
    return data


@functools.cache
def schema(name: str):
    """The XSD, parsed once per process (it takes a moment)."""
    from gate_agent.extras import require

    xmlschema = require("xmlschema", "bank")  # a missing extra is not cached: functools.cache keeps results only
    return xmlschema.XMLSchema(str(SCHEMAS / name))


def validation_problem(data: bytes, schema_name: str) -> str | None:
    """Why ``data`` is not a valid instance of the schema (its first error, one line), or None. Entities
    and DTDs are refused outright (the bytes may come from outside)."""
    from gate_agent.extras import require

    xmlschema = require("xmlschema", "bank")

    try:
        resource = xmlschema.XMLResource(io.BytesIO(data), defuse="always")
        error = next(iter(schema(schema_name).iter_errors(resource)), None)
    except (ET.ParseError, xmlschema.XMLResourceError, xmlschema.XMLSchemaException) as failure:
        return f"not well-formed XML ({str(failure).splitlines()[0][:200]})"
    if error is None:
        return None
    where = error.path or "?"
    reason = (error.reason or str(error)).splitlines()[0]
    return f"{where}: {reason}"[:300]
