"""Who a worker is as a payee: the resident ID number, the contact phone and the bank account, one check.

The store applies it on every write of a payee (collector/store/wages.py ``set_payee``), so the worker
file, ``collector worker payee`` and anything later go through the same rules:

- an ID number is a mainland resident ID (GB 11643): 17 digits, the sixth to thirteenth a birth date
  (a real day, from 1900 to today), and an ISO 7064 MOD 11-2 check character (0-9 or X; a lower-case x
  is read as X). The 15-digit number of the cards issued before 1999 (a birth date YYMMDD of the 1900s,
  no check character) is taken and kept in its 18-character form, as GB 11643-1999 converts it (19
  before the year, the check character after), so that one person is one ID number whichever was given;
- a phone is a mainland mobile number (``1[3-9]`` and 9 more digits, with or without +86 / 0086), a
  mainland landline with its area code (``0`` and 9 to 11 more digits), or a number of another country
  written with its ``+`` country code (8 to 15 digits); spaces and hyphens between digits are dropped;
- a bank account is 8 to 32 digits (spaces and hyphens between them are dropped).

A refused value is named masked (collector.masking): an error message is logged and shown, and a whole
ID or account number does not belong in either. Like collector.errors and collector.text this module
imports only leaves, so the store can use it.
"""

from __future__ import annotations

import re
from datetime import date

from collector import masking
from collector.errors import InputError

_ID_NUMBER = re.compile(r"[0-9]{17}[0-9X]")
_OLD_ID_NUMBER = re.compile(r"[0-9]{15}")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_SEPARATORS = re.compile(r"(?<=[0-9])[ -](?=[0-9])")
_MOBILE = re.compile(r"(?:\+86|0086)?(1[3-9][0-9]{9})")
_LANDLINE = re.compile(r"0[1-9][0-9]{8,10}")
_ABROAD = re.compile(r"\+(?!86)[1-9][0-9]{7,14}")
_ACCOUNT = re.compile(r"[0-9]{8,32}")
#: Longer than anything valid by far: named by its length, not shown.
_SHOWN_MAX = 40


class PayeeError(InputError):
    """An ID number, phone or bank account that is not one; the message names it masked."""


def valid_id_number(text: str) -> bool:
    """A mainland resident ID number: 17 digits holding a birth date and an ISO 7064 MOD 11-2 check character."""
    return bool(_ID_NUMBER.fullmatch(text)) and text[17] == _check_character(text[:17]) and _born(text[6:14])


def id_number(text: str) -> str:
    """The ID number as kept (18 characters, upper-case X; a 15-digit one converted), or PayeeError."""
    value = _text(text).upper()
    if _OLD_ID_NUMBER.fullmatch(value) and _born("19" + value[6:12]):
        body = value[:6] + "19" + value[6:]
        return body + _check_character(body)
    if not valid_id_number(value):
        raise PayeeError(f"ID number {_shown(value, masking.id_number)} is not a resident ID number: 18 characters "
                         "with a birth date and a valid check digit (GB 11643), or the 15 digits of a card issued "
                         "before 1999")
    return value


def _check_character(body: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


def _born(yyyymmdd: str) -> bool:
    """A birth date an ID number can hold: a real day from 1900 to today."""
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def phone(text: str) -> str:
    """The phone as kept: a mainland mobile as its 11 digits, others as their digits (``+`` kept)."""
    value = _SEPARATORS.sub("", _text(text))
    mobile = _MOBILE.fullmatch(value)
    if mobile:
        return mobile.group(1)
    if _LANDLINE.fullmatch(value) or _ABROAD.fullmatch(value):
        return value
    raise PayeeError(f"phone {_shown(value, masking.phone)} is not a mobile number (1[3-9] and 9 more digits, "
                     "+86 allowed), a landline with its area code, or +country code and number")


def bank_account(text: str) -> str:
    """The account as kept (digits only), or PayeeError."""
    value = _SEPARATORS.sub("", _text(text))
    if not _ACCOUNT.fullmatch(value):
        raise PayeeError(f"bank account {_shown(value, masking.account)} is not 8 to 32 digits")
    return value


#: Field of a payee -> its check (what the store applies).
PAYEE_CHECKS = {"id_number": id_number, "phone": phone, "bank_account": bank_account}


def _text(value) -> str:
    if not isinstance(value, str):
        raise PayeeError("an ID number, phone or account is text")
    return value.strip()


def _shown(value: str, mask) -> str:
    if not value or len(value) > _SHOWN_MAX:
        return masked(value, mask)
    return repr(masked(value, mask))


#: Field of a payee -> how a value of it is masked.
MASKS = {"id_number": masking.id_number, "phone": masking.phone, "bank_account": masking.account}


def masked(value: str, mask) -> str:
    """A refused value as a message may name it: masked and printable (what is left of a hostile value must
    not reach a terminal or a log raw); ``(empty)``, or its length when it is longer than anything valid."""
    if not value:
        return "(empty)"
    if len(value) > _SHOWN_MAX:
        return f"({len(value)} characters)"
    return mask("".join(c if c.isprintable() else "?" for c in value))
