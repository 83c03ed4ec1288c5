"""The payment batch as the bank takes it: the common Chinese bulk-payment CSV (代发工资) or ISO 20022
pain.001.001.09 (CustomerCreditTransferInitiationV09), built from a recorded batch only, so that the same
batch always gives the same bytes.

This is the one place where ID numbers and account numbers appear whole: the file is written 0600.
A pain.001 is validated against the official XSD (collector/wages/iso20022/) before anyone may write it.
"""

from __future__ import annotations

import functools
import io
import xml.etree.ElementTree as ET
from pathlib import Path

from collector.export import BOM, to_csv
from collector.money import yuan
from collector.wages.payments import Batch, PaymentError, created_time

SCHEMAS = Path(__file__).parent / "iso20022"
PAIN001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
FORMATS = ("csv", "pain001")
ENCODINGS = ("utf-8", "gbk")
PURPOSE = "工资"
#: The CSV's columns: the reference the bank's return quotes, payer, payee, amount, purpose, remark, and the
#: day the bank is asked to pay (ReqdExctnDt in a pain.001: a pay day on a rest day moved earlier, Art. 14).
CSV_COLUMNS = ("业务参考号", "付款账号", "付款户名", "收款户名", "收款账号", "收款银行", "收款人身份证号", "金额",
               "用途", "备注", "付款日期")


def remark(batch: dict, worker: str) -> str:
    return f"{batch['site']}/{batch['period']}/{worker} {PURPOSE}"


def render(batch: Batch, fmt: str, *, timezone: str, encoding: str = "utf-8") -> bytes:
    if fmt == "csv":
        return render_csv(batch, encoding=encoding)
    if fmt == "pain001":
        return render_pain001(batch, timezone=timezone)
    raise PaymentError(f"format {fmt!r}: one of {', '.join(FORMATS)}")


def render_csv(batch: Batch, *, encoding: str = "utf-8") -> bytes:
    """One row per credit in the batch's order; UTF-8 with a BOM (what spreadsheets and most banks'
    upload pages recognise) or GBK; amounts in yuan with two decimals; cells neutralised."""
    head = batch.batch
    rows = [{"业务参考号": c["end_to_end_id"], "付款账号": head["payer_account"], "付款户名": head["payer_name"],
             "收款户名": c["line"]["name"], "收款账号": c["line"]["bank_account"], "收款银行": c["line"]["bank_name"],
             "收款人身份证号": c["line"]["id_number"], "金额": yuan(c["amount_fen"]), "用途": PURPOSE,
             "备注": remark(head, c["worker"]), "付款日期": head["execution_date"]} for c in batch.credits]
    text = to_csv(rows, CSV_COLUMNS).removeprefix(BOM)  # a BOM only where the encoding has one
    if encoding == "utf-8":
        return (BOM + text).encode("utf-8")
    if encoding == "gbk":
        for row in rows:
            for column, value in row.items():
                try:
                    (value or "").encode("gbk")
                except UnicodeEncodeError:
                    raise PaymentError(f"{column} of {row['业务参考号']} ({value!r}) has a character GBK cannot hold; "
                                       "write the batch in UTF-8") from None
        return text.encode("gbk")
    raise PaymentError(f"encoding {encoding!r}: one of {', '.join(ENCODINGS)}")


def render_pain001(batch: Batch, *, timezone: str) -> bytes:
    """The batch as pain.001.001.09, one payment information block from the special wage account,
    validated against the XSD (PaymentError when it would not validate: nothing is written)."""
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
    path(group, "InitgPty/Nm", head["payer_name"])
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
        if line["bank_name"]:
            path(transfer, "CdtrAgt/FinInstnId/Nm", line["bank_name"])
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
