"""The columns of a bank's bulk-payment file (代发工资), per bank: which column holds what, in which order,
and whether the file opens with its control totals (总笔数, 总金额).

Chinese banks' upload pages each want their own layout, and they differ in the columns more than in
anything else: so a layout is data, a small TOML file per bank (``--template FILE``), and the one built
in (``DEFAULT``) is the common layout with the payee's branch (收款行行号, its CNAPS code), province,
city and the mobile phone the bank texts on payment. A template names the fields of ``FIELDS`` only: it
cannot reach anything else of the batch or of the worker.

    name = "某银行代发工资"
    control_totals = true                  # 总笔数 / 总金额 rows above the header
    columns = [["收款账号", "payee_account"], ["收款户名", "payee_name"], ["金额", "amount"],
               ["收款行行号", "payee_bank_code"], ["手机号", "payee_phone"], ["备注", "remark"]]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from collector.errors import InputError
from gate_agent.protocol import quoted

#: What a column may hold, and what it is.
FIELDS = {
    "end_to_end_id": "the credit's reference, quoted back by the bank's return (业务参考号)",
    "payer_account": "the special wage account debited (付款账号)",
    "payer_name": "its holder (付款户名)",
    "payer_bank": "its bank (付款银行)",
    "payee_name": "the worker's name as approved (收款户名)",
    "payee_account": "the worker's account as approved (收款账号)",
    "payee_bank": "the worker's bank (收款银行)",
    "payee_bank_code": "the worker's branch's CNAPS code (收款行行号), where known",
    "payee_province": "the branch's province (收款行省份), where known",
    "payee_city": "the branch's city (收款行城市), where known",
    "payee_id_number": "the worker's resident ID number (收款人身份证号)",
    "payee_phone": "the worker's mobile phone, for the bank's payment text (手机号)",
    "amount": "the credit in yuan, two decimals (金额)",
    "currency": "CNY (币种)",
    "purpose": "工资 (用途)",
    "remark": "site/period/worker 工资 (备注)",
    "execution_date": "the requested execution date, YYYY-MM-DD (期望日期)",
}
#: Fields holding a number that must reach the bank digit for digit: text cells in a workbook.
IDENTIFIERS = frozenset({"end_to_end_id", "payer_account", "payee_account", "payee_bank_code", "payee_id_number",
                         "payee_phone"})
#: The most columns a template may have, and the longest header: a layout, not a dump.
MAX_COLUMNS = 40
MAX_HEADER = 40
MAX_TEMPLATE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Template:
    """A bank's layout: ``columns`` as (header, field), and the control totals above the header."""

    name: str
    columns: tuple[tuple[str, str], ...]
    control_totals: bool = True

    def __post_init__(self) -> None:
        if not self.columns or len(self.columns) > MAX_COLUMNS:
            raise InputError(f"batch template {quoted(self.name)}: 1 to {MAX_COLUMNS} columns, not {len(self.columns)}")
        headers = [header for header, _ in self.columns]
        for header, field in self.columns:
            if field not in FIELDS:
                raise InputError(f"batch template {quoted(self.name)}: column {quoted(header)} holds {quoted(field)}, "
                                 f"not one of {', '.join(FIELDS)}")
            if not header.strip() or len(header) > MAX_HEADER or not header.isprintable():
                raise InputError(f"batch template {quoted(self.name)}: a header is 1 to {MAX_HEADER} printable "
                                 f"characters, not {quoted(header)}")
            if headers.count(header) > 1:
                raise InputError(f"batch template {quoted(self.name)}: two columns are headed {quoted(header)}")
        if "end_to_end_id" not in (field for _, field in self.columns):
            raise InputError(f"batch template {quoted(self.name)}: no end_to_end_id column: the bank's return could "
                             "not say which credit it settles")
        if "amount" not in (field for _, field in self.columns):
            raise InputError(f"batch template {quoted(self.name)}: no amount column")

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(header for header, _ in self.columns)


#: The common layout (the columns of the first CSV batch, then where the payee's bank is and the phone, and
#: the day the bank is asked to pay: a pay day on a rest day moved earlier, Art. 14).
DEFAULT = Template("default", (
    ("业务参考号", "end_to_end_id"), ("付款账号", "payer_account"), ("付款户名", "payer_name"),
    ("收款户名", "payee_name"), ("收款账号", "payee_account"), ("收款银行", "payee_bank"),
    ("收款行行号", "payee_bank_code"), ("收款行省份", "payee_province"), ("收款行城市", "payee_city"),
    ("收款人身份证号", "payee_id_number"), ("手机号", "payee_phone"), ("金额", "amount"), ("用途", "purpose"),
    ("备注", "remark"), ("付款日期", "execution_date")))


def load(path: str | Path) -> Template:
    """A template from its TOML file; InputError names the file and what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as error:
        raise InputError(f"{path}: cannot read the batch template: {error.strerror or error}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise InputError(f"{path}: larger than a batch template ({MAX_TEMPLATE_BYTES} bytes at most)")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"{path}: not a TOML batch template: {str(error).splitlines()[0][:200]}") from None
    unknown = set(document) - {"name", "columns", "control_totals"}
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (name, columns, control_totals)")
    columns = document.get("columns")
    if not isinstance(columns, list) or not all(
            isinstance(column, list) and len(column) == 2 and all(isinstance(part, str) for part in column)
            for column in columns):
        raise InputError(f"{path}: columns is a list of [header, field] pairs, e.g. [[\"收款账号\", \"payee_account\"]]")
    control = document.get("control_totals", True)
    if not isinstance(control, bool):
        raise InputError(f"{path}: control_totals is true or false")
    name = document.get("name", Path(path).stem)
    if not isinstance(name, str):
        raise InputError(f"{path}: name is a text")
    return Template(name, tuple((header, field) for header, field in columns), control)
