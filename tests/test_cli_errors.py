"""How a command and a web request fail: one way, decided in one place per tool.

An error a person can act on is one line on stderr and exit status 1 (HTTP 4xx with {"error": ...});
the database failing is exit 75 (HTTP 503); anything else is a bug: its traceback in the log, a line
saying so, exit 70 (HTTP 500 that tells the browser nothing of the code). A ValueError or KeyError from
deep in a read path must never pass for the operator's mistake, and a user's mistake never for a bug.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.request
from types import SimpleNamespace

import anyio
import pytest
from click.testing import CliRunner

from collector.cli import root as collector_cli
from collector.deploy.pki import PkiError
from collector.errors import CollectorError, InputError
from collector.ingest.bundle import BundleError
from collector.money import MoneyError
from collector.retention import RetentionError
from collector.signin import SignInError
from collector.signing import SigningKeyError
from collector.store import DatabaseError, Store, StoreError
from collector.store.copy import CopyError
from collector.wages.sheet import SheetError
from collector.wages.table import WageError
from collector.web.app import INTERNAL_ERROR, WebApp
from collector.workers.disputes import DisputeError
from gate_agent import cli as gate_cli
from gate_agent.configfile import ConfigError
from gate_agent.errors import GateError, GateInputError
from gate_agent.keys import KeyFileError
from gate_agent.protocol import ProtocolError
from tests.helpers import CollectorSetup, start_web, stop_process

BANK = "bank-ops-token-all-sites-0003"
SITE1 = "site-one-manager-token-0001"

USER_ERRORS = [StoreError("site S9 does not exist"), InputError("--to is before --from"),
               WageError("S1 2026-11 has no wage table"), PkiError("pki lacks ca.crt"),
               SigningKeyError("no signing_key set"), BundleError("not a bundle"), CopyError("--to is not a URL"),
               SignInError("no such site"), RetentionError("before is in the future"),
               MoneyError("12.345 is not an amount"), DisputeError("the note is empty"),
               SheetError("not a wage sheet"), ConfigError("c.toml: no such file"),
               KeyFileError("bank.key already exists"), GateInputError("card UID 'zz' is not hex")]
BUGS = [KeyError("max_shift_hours"), ValueError("Unknown format code 'g' for object of type 'str'"),
        TypeError("unsupported operand"), UnboundLocalError("cannot access local variable 'day'"),
        AttributeError("'NoneType' object has no attribute 'get'"),
        ProtocolError("schema", "time 'x' is not UTC with milliseconds")]


@pytest.fixture(autouse=True)
def _logging_restored():
    """The tool's group sets up logging to the stderr CliRunner captures; later tests log elsewhere."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def setup(tmp_path) -> CollectorSetup:
    """A collector configuration over a SQLite file holding site S1, with a bank and a site token."""
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": {BANK: "*", SITE1: "S1"}})
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai")
    return setup


def collector(setup: CollectorSetup, *args: str, options: tuple[str, ...] = ()):
    return CliRunner().invoke(collector_cli.main, [*options, *args, "--config", str(setup.config_path)],
                              prog_name="collector")


def failing_site_list(monkeypatch, error: Exception):
    def sites(self):
        raise error

    monkeypatch.setattr(Store, "sites", sites)


# ---------------------------------------------------------------------------------------------- collector


def test_the_error_bases_cover_what_callers_caught_before():
    # Callers that caught ValueError around parsing still catch the input errors.
    assert issubclass(InputError, ValueError) and issubclass(GateInputError, ValueError)
    assert all(isinstance(error, CollectorError | GateError) for error in USER_ERRORS)
    assert not any(isinstance(error, CollectorError) for error in BUGS)


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_a_person_can_act_on_is_one_line_and_exit_1(setup, monkeypatch, error):
    failing_site_list(monkeypatch, error)
    result = collector(setup, "site", "list")
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: {error}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(e).__name__)
def test_anything_else_is_a_bug_with_its_traceback_and_exit_70(setup, monkeypatch, error):
    failing_site_list(monkeypatch, error)
    result = collector(setup, "site", "list")
    assert result.exit_code == 70, result.output
    lines = result.stderr.splitlines()
    assert "CRITICAL collector: internal error: `collector site` failed" in result.stderr
    assert "Traceback (most recent call last):" in result.stderr
    assert f"{type(error).__name__}: " in lines[-2]  # the traceback's last line, then the one line
    assert lines[-1].startswith(f"Error: internal error, this is a bug ({type(error).__name__}: ")
    assert result.stdout == ""


def test_a_bug_is_reported_even_with_quiet(setup, monkeypatch):
    failing_site_list(monkeypatch, KeyError("timezone"))
    result = collector(setup, "site", "list", options=("-q",))
    assert result.exit_code == 70
    assert "Traceback" in result.stderr and "KeyError: 'timezone'" in result.stderr


def test_the_database_failing_is_one_line_and_exit_75(setup, monkeypatch):
    failing_site_list(monkeypatch, DatabaseError("database or disk is full"))
    result = collector(setup, "site", "list")
    assert result.exit_code == 75, result.output
    assert result.stderr.startswith("Error: the database failed: database or disk is full (")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_error_message_reaches_the_terminal_escaped(setup, monkeypatch):
    failing_site_list(monkeypatch, StoreError("site \x1b]0;owned\x07S1 does not exist"))
    result = collector(setup, "site", "list")
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "\\x1b]0;owned\\x07S1" in result.stderr


def test_real_user_errors_are_one_line_and_exit_1(setup):
    for args, message in [(("site", "add", "S 2", "--timezone", "Asia/Shanghai"), "SITE 'S 2' is not an id"),
                          (("site", "add", "S3", "--timezone", "Mars/Base"), "'Mars/Base' is not an IANA time zone"),
                          (("worker", "add", "W1", "--name", "A", "--card", "zz"), "card UID 'zz' is not 4 to 10"),
                          (("attendance", "--site", "S1", "--from", "2026-01-01", "--to", "2027-12-01"),
                           "at most 366 are computed at once"),
                          (("wages", "show", "--site", "S1", "--period", "2026-13"), "is not a month YYYY-MM")]:
        result = collector(setup, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("Error: ") and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, (args, result.stderr)


def test_click_usage_errors_keep_exit_2(setup):
    result = collector(setup, "attendance")
    assert result.exit_code == 2 and "Missing option '--site'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_configuration_is_one_line(tmp_path):
    result = CliRunner().invoke(collector_cli.main, ["site", "list", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1


@pytest.mark.slow
def test_a_corrupted_database_is_a_bug_in_a_real_process(setup):
    """A row no code path writes (a shift length that is text) fails deep in a read path with a
    TypeError and a ValueError: reported as bugs, never as the operator's mistake."""
    with sqlite3.connect(setup.db_path) as db:
        db.execute("UPDATE sites SET max_shift_hours = 'x'")
    for args, error in [(("attendance", "--site", "S1"), "TypeError"), (("site", "list"), "ValueError")]:
        result = setup.run(*args, check=False)
        assert result.returncode == 70, (args, result.stdout, result.stderr)
        assert "Traceback (most recent call last):" in result.stderr
        assert result.stderr.splitlines()[-1].startswith(f"Error: internal error, this is a bug ({error}: ")
    refused = setup.run("site", "add", "S 2", "--timezone", "Asia/Shanghai", check=False)
    assert refused.returncode == 1 and refused.stderr == "Error: SITE 'S 2' is not an id (letters, digits, '_', " \
                                                         "'.', '-')\n"


# ---------------------------------------------------------------------------------------------- gate-agent


def test_gate_agent_user_error_is_one_line_and_exit_1(tmp_path):
    key = tmp_path / "gate.key"
    assert CliRunner().invoke(gate_cli.main, ["keygen", "--key-file", str(key)]).exit_code == 0
    result = CliRunner().invoke(gate_cli.main, ["keygen", "--key-file", str(key)])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("error, status", [(GateInputError("card UID 'zz' is not hex"), 1),
                                           (KeyFileError("gate.key: not a key"), 1),
                                           (KeyError("key_file"), 70),
                                           (ValueError("bad"), 70),
                                           # bytes from the network or a card: a bug when they reach the top
                                           (ProtocolError("schema", "x"), 70)],
                         ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_gate_agent_fails_one_way(tmp_path, monkeypatch, error, status):
    def generate_key_file(path):
        raise error

    monkeypatch.setattr("gate_agent.keys.generate_key_file", generate_key_file)
    result = CliRunner().invoke(gate_cli.main, ["keygen", "--key-file", str(tmp_path / "gate.key")])
    assert result.exit_code == status, result.output
    if status == 1:
        assert result.stderr == f"Error: {error}\n"
    else:
        assert "Traceback (most recent call last):" in result.stderr
        assert result.stderr.splitlines()[-1].startswith(f"Error: internal error, this is a bug ({type(error).__name__}")


# ---------------------------------------------------------------------------------------------- the web


def request(app, path: str, token: str | None = BANK) -> tuple[int, dict[bytes, bytes], dict]:
    """One GET through the ASGI application itself (no server, no HTTP client library)."""
    sent: list[dict] = []
    headers = [(b"host", b"127.0.0.1")] + ([(b"authorization", f"Bearer {token}".encode())] if token else [])
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body)


@pytest.fixture
def web(setup):
    from collector.config import load_config

    return WebApp(load_config(str(setup.config_path))).app


def failing_headcount(monkeypatch, error: Exception):
    def headcount(store, site):
        raise error

    monkeypatch.setattr("collector.web.app.headcount", headcount)


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(e).__name__)
def test_a_bug_in_a_route_is_500_with_a_generic_message_and_its_traceback_logged(web, monkeypatch, caplog, error):
    failing_headcount(monkeypatch, error)
    with caplog.at_level(logging.ERROR, logger="collector.web.app"):
        status, headers, body = request(web, "/api/sites/S1/headcount")
    assert status == 500 and body == {"error": INTERNAL_ERROR}
    assert str(error) not in json.dumps(body)
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-content-type-options"] == b"nosniff"  # the security headers hold for a bug too
    logged = [r for r in caplog.records if r.name == "collector.web.app" and r.exc_info]
    assert len(logged) == 1 and logged[0].exc_info[1] is error
    assert "GET /api/sites/S1/headcount" in logged[0].getMessage()


@pytest.mark.parametrize("error, status", [(InputError("the period ends before it starts"), 400),
                                           (StoreError("worker W9 does not exist"), 400),
                                           (GateInputError("card UID 'zz' is not hex"), 400),
                                           (DatabaseError("database is locked"), 503)],
                         ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_a_project_error_in_a_route_is_a_4xx_or_503_json_error(web, monkeypatch, caplog, error, status):
    failing_headcount(monkeypatch, error)
    with caplog.at_level(logging.ERROR, logger="collector.web.app"):
        answer, _, body = request(web, "/api/sites/S1/headcount")
    assert answer == status
    if status == 503:
        # What the driver said stays in the log; the database failing is the bank's to see.
        assert body == {"error": "the database is not available now; try again later"}
        assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [error]
    else:
        assert body == {"error": str(error)}
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_documented_api_errors_keep_their_shape(web):
    status, headers, body = request(web, "/api/sites/S1/headcount", token=None)
    assert status == 401 and body == {"error": "an Authorization: Bearer token is required"}
    assert headers[b"www-authenticate"] == b'Bearer realm="collector"'
    status, _, body = request(web, "/api/sites/S2/headcount", token=SITE1)
    assert status == 403 and body == {"error": "this token is for site S1 only"}
    status, _, body = request(web, "/api/sites/S9/headcount")
    assert status == 404 and body == {"error": "there is no site S9"}
    status, _, body = request(web, "/api/sites/S1/headcount")
    assert status == 200 and body["site"] == "S1"


@pytest.mark.slow
def test_a_corrupted_database_is_a_500_from_a_real_server(setup):
    with sqlite3.connect(setup.db_path) as db:
        db.execute("UPDATE sites SET max_shift_hours = 'x'")
    process, url = start_web(setup)
    try:
        http = urllib.request.Request(url + "/api/sites/S1/headcount", headers={"Authorization": f"Bearer {BANK}"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(http, timeout=30)
        assert failed.value.code == 500
        assert json.loads(failed.value.read()) == {"error": INTERNAL_ERROR}
    finally:
        stop_process(process)
    log = (setup.directory / "serve.log").read_text()
    assert "internal error, a bug: GET /api/sites/S1/headcount" in log
    assert "TypeError: unsupported type for timedelta hours component: str" in log
    # Logged once, by the app: the server did not see the exception too.
    assert log.count("Traceback (most recent call last):") == 1

