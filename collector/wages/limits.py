"""What the collector's config sets for wages beyond the law's own numbers: the least a day-rate day is
worked to be paid, and the amounts unusual enough to be pointed out (``[wages]``, docs/wages.md).

The hard bound on an amount is not here: it is ``collector.money.MAX_CREDIT_FEN``, the same for every
path (terms, lines, batches, returns), refused wherever it is passed. These are warnings: a rate or a
total above them is entered, computed and paid as asked, and said so each time.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.money import yuan


@dataclass(frozen=True)
class WageLimits:
    #: A day-rate day worked less than this many minutes is a ``short_day`` decision, not a paid day (0: off).
    paid_day_minutes: int = 240
    #: With half days: a day-rate day worked at least this many minutes but less than ``paid_day_minutes``
    #: is paid half the day rate (0: no half days).
    half_day_minutes: int = 0
    unusual_day_rate_fen: int = 200_000       # 2,000 yuan a day
    unusual_hourly_rate_fen: int = 25_000     # 250 yuan an hour
    unusual_line_fen: int = 6_000_000         # 60,000 yuan one worker's month
    unusual_batch_fen: int = 500_000_000      # 5,000,000 yuan one batch

    def __post_init__(self) -> None:
        if self.paid_day_minutes < 0 or self.half_day_minutes < 0:
            raise ValueError("minutes are not negative")
        if self.half_day_minutes and self.half_day_minutes >= self.paid_day_minutes:
            raise ValueError(f"half_day_minutes ({self.half_day_minutes}) must be below paid_day_minutes "
                             f"({self.paid_day_minutes})")

    def unusual_rate_fen(self, basis: str) -> int:
        return self.unusual_day_rate_fen if basis == "day" else self.unusual_hourly_rate_fen


def rate_warning(basis: str, rate_fen: int, limits: WageLimits) -> str:
    """Why a rate is unusual, or ''."""
    bound = limits.unusual_rate_fen(basis)
    if rate_fen <= bound:
        return ""
    key = "unusual_day_rate_yuan" if basis == "day" else "unusual_hourly_rate_yuan"
    return (f"{yuan(rate_fen)} yuan per {basis} is above {yuan(bound)} ([wages] {key}): an unusual rate, "
            "check it was meant")


def line_warnings(lines: list[dict], limits: WageLimits) -> list[str]:
    """One warning per line whose gross or net is unusual, and per rate that is."""
    found = []
    for line in lines:
        amount = max(line["gross_fen"], line["net_fen"])
        if amount > limits.unusual_line_fen:
            found.append(f"{line['worker']}: {yuan(amount)} yuan for the month is above "
                         f"{yuan(limits.unusual_line_fen)} ([wages] unusual_line_yuan): check it before approving")
        for segment in line["detail"]["segments"]:
            warning = rate_warning(segment["basis"], segment["rate_fen"], limits)
            if warning:
                found.append(f"{line['worker']}: {warning}")
    return found


def batch_warnings(batch, limits: WageLimits) -> list[str]:
    """Warnings for a batch (``collector.wages.payments.Batch``): its total, and each unusual credit."""
    found = []
    if batch.total_fen > limits.unusual_batch_fen:
        found.append(f"the batch's {yuan(batch.total_fen)} yuan is above {yuan(limits.unusual_batch_fen)} "
                     "([wages] unusual_batch_yuan): check it before sending it to the bank")
    for credit in batch.batch["payments"]:
        if credit["amount_fen"] > limits.unusual_line_fen:
            found.append(f"{credit['worker']}: a credit of {yuan(credit['amount_fen'])} yuan is above "
                         f"{yuan(limits.unusual_line_fen)} ([wages] unusual_line_yuan)")
    return found
