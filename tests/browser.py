"""One headless Chromium per test process (Debian's chromium through chromium-driver), shared by the page
tests: starting a browser costs seconds, a fresh tab with its data cleared costs little.

``open_tab()`` gives a test the browser in a new tab, every other tab closed, cookies, storage and cache
cleared, and the test's browser language, window size and download folder set on that tab; its
``quit()`` leaves the browser running for the next test. tests/conftest.py closes the browser when the
session ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class _Browser:
    """The process's Chromium, started on first use."""

    def __init__(self):
        self.driver = None
        self.home: Path | None = None
        self.user_agent = ""

    def start(self):
        if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
            pytest.fail("the browser test needs Debian's chromium and chromium-driver (./dev test installs them)")
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download anything
        self.home = Path(tempfile.mkdtemp(prefix="test-chromium-"))
        options = Options()
        options.binary_location = CHROMIUM
        # Root needs --no-sandbox; the machine has no network, and background networking would hang.
        for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--no-first-run",
                         "--disable-sync", "--disable-extensions", f"--user-data-dir={self.home / 'profile'}",
                         "--window-size=1280,900"):
            options.add_argument(argument)
        options.add_experimental_option("prefs", {"download.prompt_for_download": False})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(self.home / "chromedriver.log")),
                                       options=options)
        self.driver.set_page_load_timeout(60)
        self.user_agent = self.driver.execute_script("return navigator.userAgent")
        return self.driver

    def close(self) -> None:
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:  # a browser that died already: nothing to close
                pass
            self.driver = None
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def fresh_tab(self):
        """The browser on a new tab, every other tab closed and every site's data cleared; a browser
        that stopped answering is started again."""
        from selenium.common.exceptions import WebDriverException

        for attempt in (1, 2):
            driver = self.driver or self.start()
            try:
                driver.switch_to.new_window("tab")
                current = driver.current_window_handle
                for handle in driver.window_handles:
                    if handle != current:
                        driver.switch_to.window(handle)
                        driver.close()
                driver.switch_to.window(current)
                driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "*", "storageTypes": "all"})
                driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
                driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                return driver
            except WebDriverException:
                if attempt == 2:
                    raise
                self.close()
        raise AssertionError("unreachable")


_browser = _Browser()


class Tab:
    """The shared browser as one test's own: everything a WebDriver does, except that ``quit()`` only
    leaves the page (the next test's tab replaces this one)."""

    def __init__(self, driver):
        object.__setattr__(self, "_driver", driver)

    def __getattr__(self, name):
        return getattr(self._driver, name)

    def quit(self) -> None:
        try:
            self._driver.get("about:blank")
        except Exception:  # the next open_tab() starts the browser again if it is gone
            pass


def open_tab(*, lang: str | None = None, size: str = "412,915", device: bool = True,
             downloads: Path | None = None) -> Tab:
    """The shared browser on a fresh tab: ``lang`` its language (Accept-Language, navigator.language and
    Intl; None: Chromium's own), ``size`` the window (below 500 px wide, the minimum of a headless window,
    a phone is emulated as a device unless ``device`` is False), ``downloads`` where downloads go without
    asking."""
    driver = _browser.fresh_tab()
    width, height = (int(n) for n in size.split(","))
    driver.set_window_size(width, height)
    if width < 500 and device:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 3, "mobile": True})
    if lang is not None:
        driver.execute_cdp_cmd("Emulation.setUserAgentOverride",
                               {"userAgent": _browser.user_agent, "acceptLanguage": lang})
        driver.execute_cdp_cmd("Emulation.setLocaleOverride", {"locale": lang.replace("-", "_")})
    if downloads is not None:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return Tab(driver)


def close() -> None:
    """Quit the shared browser, if it was started (at the end of the session)."""
    _browser.close()
