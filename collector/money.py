"""Money: integer fen (1 yuan = 100 fen) everywhere, never a float; yuan only at the edges, as text.

One rounding rule, applied once per wage line: half up (a half fen rounds away from zero; amounts are
never negative here). Parsing refuses what is not an exact amount of fen.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import InputError

#: A bound no amount this system reads reaches (a billion yuan: a whole sheet's or batch's total), so that a
#: typo is refused.
MAX_FEN = 100_000_000_000
#: The one bound on what one worker is paid for one month: a line's gross and net, a deduction, a credit in a
#: batch and the amount a bank's return quotes for it (a million yuan). A rate is bounded by it too: a rate
#: that a month of work at it (every day of the longest month, every hour of each day) would take past it
#: is refused when it is entered, so that every amount a table computes can be batched and returned.
MAX_CREDIT_FEN = 100_000_000
#: The longest month, in days and hours: what bounds a rate by ``MAX_CREDIT_FEN``.
_MONTH_DAYS = 31
#: The highest rate per basis (fen per day, fen per hour).
MAX_RATE_FEN = {"day": MAX_CREDIT_FEN // _MONTH_DAYS, "hour": MAX_CREDIT_FEN // (_MONTH_DAYS * 24)}

_YUAN = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")


class MoneyError(InputError):
    """Text that is not an amount of yuan with at most two decimals (one line)."""


def parse_yuan(text: str, *, what: str = "amount") -> int:
    """``"350"``, ``"350.5"`` or ``"350.50"`` yuan -> 35050 fen. No sign, no thousands separators, no
    more than two decimals: a payroll amount is never guessed."""
    value = str(text).strip()
    if not _YUAN.fullmatch(value):
        raise MoneyError(f"{what} {value[:40]!r} is not yuan with at most two decimals (e.g. 350 or 350.50)")
    try:
        fen = int(Decimal(value) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern already refuses what Decimal would
        raise MoneyError(f"{what} {value[:40]!r} is not a number") from None
    if fen > MAX_FEN:
        raise MoneyError(f"{what} {value} yuan is beyond any wage this system handles")
    return fen


def rate_problem(basis: str, rate_fen: int) -> str | None:
    """Why a rate (fen per ``basis``, day or hour) is not a wage anyone is paid, or None: one rule for
    every path that enters terms (the CLI, the worker file, the store)."""
    bound = MAX_RATE_FEN.get(basis)
    if bound is not None and rate_fen > bound:
        return (f"{yuan(rate_fen)} yuan per {basis} is not a plausible wage: a month at it could pass "
                f"{yuan(MAX_CREDIT_FEN)} yuan, the most one worker's month is paid (at most {yuan(bound)} yuan "
                f"per {basis})")
    return None


def yuan(fen: int) -> str:
    """35050 -> "350.50" (what a bank's batch file and a person read)."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError(f"money is integer fen, not {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def divide_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, in integers (no float ever touches the amount)."""
    if denominator <= 0 or numerator < 0:
        raise ValueError("amounts and divisors here are never negative")
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)
