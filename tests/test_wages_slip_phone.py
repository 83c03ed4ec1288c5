"""The wage slip as a worker reads it on a phone, in a real headless Chromium at 412 px: nothing runs off
the side (the tables' rows stack into labelled cards), Chinese comes first, every time is the site's, and
a line paid more than its net says 多付 instead of "paid X of Y"; on both engines, with the real CLI.

The final October of tests/test_wages.py: W1 is paid its 1440.00, then a correction deducts 20.00 more.
"""

from __future__ import annotations

import re

import pytest

from tests import test_wages
from tests.browser import open_tab
from tests.test_wages_payments import PERIOD, approve, bank_return, batch, credits, paid_day

pytestmark = pytest.mark.slow
month = test_wages.month


def overpaid_slip(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    ids = credits(tmp_path / "b1.xml")
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        (ids["W1"][0], "paid", "VCH-0001", paid_day(), "")]))
    month.cli("wages", "deduct", *PERIOD, "--worker", "W1", "--item", "工具损坏", "--amount-yuan", "20",
              "--reason", "a drill broken", "--by", "ops-li")
    month.cli("wages", "run", *PERIOD, "--by", "ops-wang", "--reason", "a deduction came late")
    month.cli("wages", "approve", *PERIOD, "--by", "ops-zhao")
    out = tmp_path / "w1.html"
    month.cli("wages", "slip", "--worker", "W1", "--period", "2026-10", "--out", str(out))
    return out


def test_an_overpaid_slip_on_a_phone(month, tmp_path):
    out = overpaid_slip(month, tmp_path)
    page = out.read_text(encoding="utf-8")
    assert "多付 Overpaid: 20.00 元 yuan more than the net" in page
    assert "paid 1440.00 of 1420.00" not in page
    assert not re.search(r"[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z", page), "no UTC time: the site's only"
    assert re.search(r"\+08:00 由 ops-zhao 审批 approved", page) and "已支付 paid" in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    driver = open_tab(size="412,915")
    try:
        driver.get(out.as_uri())
        assert driver.execute_script("return window.innerWidth") == 412
        wide = driver.execute_script(
            "return Array.from(document.querySelectorAll('body *')).filter("
            "e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + ':' + "
            "e.textContent.slice(0, 30))")
        assert wide == [], "nothing runs off a 412 px screen"
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        # The payment rows stack: each cell a line of its own, labelled.
        cell = driver.find_element("css selector", "#payment + table tr:not(.head) td")
        assert driver.execute_script("return getComputedStyle(arguments[0]).display", cell) == "block"
        label = driver.execute_script("return getComputedStyle(arguments[0], '::before').content", cell)
        assert label.startswith('"业务参考号 Reference')
        assert driver.find_element("css selector", "#payment + table tr.head").is_displayed() is False
        payment = driver.find_element("id", "payment").text
        assert "多付 Overpaid 20.00 元 yuan" in payment
        heading = driver.find_element("tag name", "h1").text
        assert heading.startswith("工资清单")
    finally:
        driver.quit()
    # On a desktop's width the same page is a table again.
    driver = open_tab(size="1280,900")
    try:
        driver.get(out.as_uri())
        cell = driver.find_element("css selector", "#payment + table tr:not(.head) td")
        assert driver.execute_script("return getComputedStyle(arguments[0]).display", cell) == "table-cell"
    finally:
        driver.quit()
