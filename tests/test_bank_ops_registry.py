"""Bank ops' registry work: workers belong to sites, imports are upserts with a report, Chinese files.

Each test reproduces what got in the way of an operator (30 workers with Chinese names, three employers,
two sites) and checks what they now get.
"""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, Roster, encode_punches, format_time, roster_topic
from tests.helpers import BANK_KEYS, CollectorSetup, Listener, PunchFactory, stop_process, wait_for

W1, W2, W3 = "04A1B2C3D4E5F6", "DEADBEEF", "CAFEBABE"


@pytest.fixture
def bank(tmp_path, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    setup.run("site", "add", "GZ01", "--timezone", "Asia/Shanghai", "--name", "广州项目")
    setup.run("site", "add", "SZ02", "--timezone", "Asia/Shanghai", "--name", "深圳项目")
    return setup


def test_a_workers_sites_decide_which_rosters_hold_the_card(tmp_path, broker):
    """A worker of GZ01 tapping at SZ02 must get the unknown-card signal there: SZ02's roster does not
    hold the card. Moving the worker moves the card between the rosters."""
    setup = CollectorSetup.create(tmp_path / "collector", broker=broker)
    setup.run("site", "add", "GZ01", "--timezone", "Asia/Shanghai")
    setup.run("site", "add", "SZ02", "--timezone", "Asia/Shanghai")
    setup.run("worker", "add", "W1", "--name", "王伟", "--card", W1, "--site", "GZ01")
    setup.run("worker", "add", "W2", "--name", "李娜", "--card", W2, "--site", "GZ01", "--site", "SZ02")
    listener = Listener(broker.port, roster_topic("GZ01"), roster_topic("SZ02"))
    daemon = setup.start()

    def rosters() -> dict[str, frozenset]:
        latest = {}
        for message in listener.received("/roster"):
            site = message.topic.split("/")[2]
            latest[site] = Roster.decode(message.payload, site=site, keys=BANK_KEYS).cards
        return latest

    try:
        wait_for(lambda: rosters().get("GZ01") == {W1, W2} and rosters().get("SZ02") == {W2},
                 message="each site's own roster")
        setup.run("worker", "unassign", "W1", "--site", "GZ01")
        setup.run("worker", "assign", "W1", "--site", "SZ02")
        wait_for(lambda: rosters().get("GZ01") == {W2} and rosters().get("SZ02") == {W1, W2},
                 message="the card moved with the worker")
    finally:
        stop_process(daemon, signal.SIGKILL)
        listener.close()


def test_a_tap_where_the_worker_is_not_assigned_is_flagged_not_assigned(bank):
    gate = PunchFactory(site="SZ02", gate="sz-north")
    bank.run("gate", "add", "sz-north", "--site", "SZ02", "--public-key", gate.public_key)
    bank.run("worker", "add", "W1", "--name", "王伟", "--card", W1, "--site", "GZ01")
    now = datetime.now(UTC).replace(microsecond=0)
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("SZ02", "sz-north").punch, encode_punches(
            [gate.next(card=W1, at=now - timedelta(hours=2))]), format_time(now))])
    local = now.astimezone(ZoneInfo("Asia/Shanghai"))  # the site's days, whatever the hour in UTC
    records = bank.json("attendance", "--site", "SZ02", "--from", (local - timedelta(days=1)).date().isoformat(),
                        "--to", local.date().isoformat())
    assert [r["worker"] for r in records] == ["W1"] and "not_assigned" in records[0]["flags"]


def test_sites_are_listed_and_edited(bank):
    bank.run("worker", "add", "W1", "--name", "王伟", "--site", "GZ01")
    sites = {s["site"]: s for s in bank.json("site", "list")}
    assert (sites["GZ01"]["name"], sites["GZ01"]["workers"], sites["SZ02"]["workers"]) == ("广州项目", 1, 0)
    assert "广州项目" in bank.run("site", "list").stdout
    bank.run("site", "edit", "GZ01", "--name", "广州一期", "--max-shift-hours", "12")
    assert bank.json("site", "list")[0]["name"] == "广州一期"
    # A zone may change while the site has no punch; after one, local dates must not move.
    bank.run("site", "edit", "SZ02", "--timezone", "Asia/Hong_Kong")
    gate = PunchFactory(site="GZ01", gate="gz-north")
    bank.run("gate", "add", "gz-north", "--site", "GZ01", "--public-key", gate.public_key)
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("GZ01", "gz-north").punch, encode_punches([gate.next()]),
                                         format_time(datetime.now(UTC)))])
    refused = bank.run("site", "edit", "GZ01", "--timezone", "Asia/Tokyo", check=False)
    assert refused.returncode == 1 and "has punches" in refused.stderr


def write(path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_reimporting_is_an_upsert_with_a_report_and_dry_run_changes_nothing(bank, tmp_path):
    first = write(tmp_path / "a.csv", "worker,name,card,employer,site\nW1,王伟,04A1B2C3D4E5F6,华建劳务,GZ01\n"
                                      "W2,李娜,DEADBEEF,华建劳务,GZ01\nW3,张敏,,鑫城建筑,GZ01\n")
    report = bank.json("worker", "import", first)
    assert report["new"] == ["W1", "W2", "W3"] and report["encoding"] == "utf-8"
    # W1 renamed, W2 given a new card (replacing the old, not a second valid one), W3 unchanged.
    second = write(tmp_path / "b.csv", "worker,name,card,employer,site\nW1,王伟伟,04A1B2C3D4E5F6,华建劳务,GZ01\n"
                                       "W2,李娜,CAFEBABE,华建劳务,GZ01\nW3,张敏,,鑫城建筑,GZ01\n")
    before = bank.json("worker", "list")
    dry = bank.json("worker", "import", second, "--dry-run")
    assert dry["dry_run"] and dry["changed"] == [{"worker": "W1", "fields": {"name": ["王伟", "王伟伟"]}}]
    assert dry["cards_replaced"] == [{"worker": "W2", "card": W3, "replaces": [W2]}] and dry["unchanged"] == 1
    assert bank.json("worker", "list") == before, "a dry run changed something"
    text = bank.run("worker", "import", second).stdout
    assert "0 new, 1 changed, 1 unchanged; 0 card(s) added, 1 replaced" in text
    assert "W2: card DEADBEEF replaced by CAFEBABE" in text
    workers = {w["worker"]: w for w in bank.json("worker", "list")}
    assert workers["W1"]["name"] == "王伟伟"
    assert [c["uid"] for c in workers["W2"]["cards"] if c["valid_to"] is None] == [W3]


def test_a_gbk_file_with_chinese_headers_imports_with_payee_and_pay_terms(bank, tmp_path):
    path = write(tmp_path / "gbk.csv",
                 "工号,姓名,卡号,单位,工地,身份证号,手机号,银行卡号,开户行,计薪方式,工资标准,生效日期\n"
                 "W1,王伟,04A1B2C3D4E5F6,华建劳务,GZ01,11010519491231002X,13812345678,6222021234567890123,"
                 "中国工商银行,日,350,2026-11-01\n", encoding="gbk")
    report = bank.json("worker", "import", path)
    assert report["encoding"] == "gb18030" and report["new"] == ["W1"]
    assert report["terms"] == [{"worker": "W1", "basis": "day", "rate_fen": 35000, "from": "2026-11-01"}]
    worker = bank.json("worker", "list")[0]
    assert (worker["name"], worker["employer"], worker["sites"]) == ("王伟", "华建劳务", ["GZ01"])
    assert bank.json("wages", "terms", "--worker", "W1")[0]["rate_fen"] == 35000
    with bank.store() as store:
        assert store.payee("W1")["bank_account"] == "6222021234567890123"
    # Shown masked in the import report when it changes.
    changed = write(tmp_path / "gbk2.csv", "工号,姓名,银行卡号\nW1,王伟,6222021234567899999\n", encoding="gbk")
    text = bank.run("worker", "import", changed).stdout
    assert "'***************9999'" in text and "6222021234567899999" not in text


def test_bad_rows_are_listed_with_their_lines_capped_with_a_count(bank, tmp_path):
    lines = ["worker,name,card"] + [f"W{n},,0A0B0C0D" for n in range(5000)]
    path = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    result = bank.run("worker", "import", path, check=False)
    errors = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(errors) == 22, len(errors)
    assert errors[0].endswith("line 2: name is empty") and "... and 4980 more" in errors[20]
    assert "5000 bad row(s); nothing imported" in errors[21]
    assert bank.json("worker", "list") == []


def test_a_file_in_neither_utf8_nor_gbk_is_refused_in_one_line(bank, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"worker,name\nW1,\xff\xfe\xfd\n")
    result = bank.run("worker", "import", str(path), check=False)
    assert result.returncode == 1 and "neither UTF-8 nor GBK" in result.stderr


def test_a_worker_is_edited_and_removed_and_their_history_stays(bank):
    gate = PunchFactory(site="GZ01", gate="gz-north")
    bank.run("gate", "add", "gz-north", "--site", "GZ01", "--public-key", gate.public_key)
    bank.run("worker", "add", "W1", "--name", "王伟", "--card", W1, "--site", "GZ01", "--employer", "华建劳务")
    now = datetime.now(UTC).replace(microsecond=0)
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("GZ01", "gz-north").punch, encode_punches(
            [gate.next(card=W1, at=now - timedelta(hours=3))]), format_time(now - timedelta(hours=3)))])
    assert "employer '华建劳务' -> '鑫城建筑'" in bank.run("worker", "edit", "W1", "--employer", "鑫城建筑").stdout
    removed = bank.run("worker", "remove", "W1", "--by", "ops-li").stdout
    assert "assignments ended at GZ01" in removed and f"cards ended {W1}" in removed
    # Said in the site's time; and W1 tapped in three hours ago: the foreman's count keeps them until an OUT.
    assert re.search(r"W1 removed at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", removed), removed
    assert "warning: W1 is inside GZ01 now" in removed and "collector punch add --worker W1 --site GZ01" in removed
    assert [w["worker"] for w in bank.json("headcount", "--site", "GZ01")["workers"]] == ["W1"]
    worker = bank.json("worker", "list")[0]
    assert worker["removed_at"] and worker["sites"] == [] and all(c["valid_to"] for c in worker["cards"])
    assert bank.json("worker", "list", "--site", "GZ01") == []
    punches = bank.json("punches", "--site", "GZ01")
    assert [p.get("worker") for p in punches] == ["W1"], "the history stays the worker's"
    day = (now - timedelta(hours=3)).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert [r["worker"] for r in bank.json("attendance", "--site", "GZ01", "--date", day)] == ["W1"]


def test_team_and_trade_are_their_own_fields_read_from_the_file_and_kept_as_history(bank, tmp_path):
    """A roster with both 班组 (the work team) and 单位 (the labour company): the team is not the employer.
    The dry run says which column fed which field; a change of team later is kept with who made it."""
    roster = tmp_path / "roster.csv"
    roster.write_text("工号,姓名,单位,班组,工种,工地\nW1,王伟,华建劳务,钢筋班,钢筋工,GZ01\nW2,李娜,华建劳务,木工班,木工,GZ01\n",
                      encoding="utf-8")
    dry = bank.run("worker", "import", str(roster), "--dry-run").stdout
    assert "columns read: 工号 -> worker, 姓名 -> name, 单位 -> employer, 班组 -> team, 工种 -> trade, 工地 -> site" in dry
    assert "columns not read" not in dry
    bank.run("worker", "import", str(roster), "--by", "ops-li")
    workers = {w["worker"]: w for w in bank.json("worker", "list")}
    assert (workers["W1"]["employer"], workers["W1"]["team"], workers["W1"]["trade"]) == ("华建劳务", "钢筋班", "钢筋工")
    assert workers["W2"]["team"] == "木工班"
    # The next roster moves W2 to another team: a change, kept; the CLI changes a trade the same way.
    roster.write_text("工号,姓名,单位,班组\nW2,李娜,华建劳务,钢筋班\n", encoding="utf-8")
    planned = bank.run("worker", "import", str(roster), "--dry-run").stdout
    assert "W2: team '木工班' -> '钢筋班'" in planned
    bank.run("worker", "import", str(roster), "--by", "ops-wang")
    bank.run("worker", "edit", "W2", "--trade", "钢筋工", "--by", "ops-zhao")
    history = bank.json("worker", "history", "W2")
    assert [(c["field"], c["before"], c["after"], c["changed_by"]) for c in history] == [
        ("team", "木工班", "钢筋班", "ops-wang"), ("trade", "木工", "钢筋工", "ops-zhao")]
    # Read by a person: in the site's time with the zone named (W2 works at GZ01 alone), not the stored UTC.
    bank.run("worker", "assign", "W2", "--site", "GZ01", "--by", "ops-li", check=False)
    heading, *lines = bank.run("worker", "history", "W2").stdout.splitlines()
    assert heading == "W2: times in Asia/Shanghai (the site's time)"
    shanghai = datetime.fromisoformat(history[0]["changed_at"].replace("Z", "+00:00")).astimezone(ZoneInfo("Asia/Shanghai"))
    assert lines[0].startswith(shanghai.strftime("%Y-%m-%d %H:%M:%S") + " team '木工班' -> '钢筋班'"), lines[0]
    bank.run("worker", "add", "W3", "--name", "赵六", "--team", "\u202e班", "--site", "GZ01", check=False)
    assert bank.json("worker", "list", "--site", "GZ01")[-1]["worker"] != "W3", "a bidi override is refused"


def test_assign_and_unassign_speak_in_site_time_and_warn_of_taps_left_outside(bank):
    """A worker moved off a site from a date their taps go past: the command says the moment in the site's
    time, and that those taps' days are now flagged not_assigned."""
    gate = PunchFactory(site="GZ01", gate="gz-north")
    bank.run("gate", "add", "gz-north", "--site", "GZ01", "--public-key", gate.public_key)
    bank.run("worker", "add", "W1", "--name", "王伟", "--card", W1)
    said = bank.run("worker", "assign", "W1", "--site", "GZ01", "--from", "2026-11-01").stdout
    assert said.strip() == "W1 works at GZ01 from 2026-11-01 00:00 (the site's time)"
    with bank.store() as store:
        for day in (2, 3):
            moment = datetime(2026, 11, day, 0, 0, tzinfo=UTC)  # 08:00 at the site
            Ingestor(store).ingest([Incoming(GateTopics("GZ01", "gz-north").punch, encode_punches(
                [gate.next(card=W1, at=moment)]), format_time(moment))])
    said = bank.run("worker", "unassign", "W1", "--site", "GZ01", "--at", "2026-11-03").stdout
    assert "W1 no longer works at GZ01 from 2026-11-03 00:00 (the site's time)" in said
    assert "warning: 1 tap(s) of W1 at GZ01 are at or after that moment" in said
    day = next(r for r in bank.json("attendance", "--site", "GZ01", "--date", "2026-11-03") if r["worker"] == "W1")
    assert "not_assigned" in day["flags"]


def test_headcount_lines_up_chinese_and_latin_names_by_the_columns_they_take(bank):
    from collector.cli.display import width

    gate = PunchFactory(site="GZ01", gate="gz-north")
    bank.run("gate", "add", "gz-north", "--site", "GZ01", "--public-key", gate.public_key)
    bank.run("worker", "add", "W1", "--name", "王伟强", "--card", W1, "--site", "GZ01")
    bank.run("worker", "add", "W2", "--name", "Li Na", "--card", W2, "--site", "GZ01")
    now = datetime.now(UTC).replace(microsecond=0)
    with bank.store() as store:
        for card in (W1, W2):
            Ingestor(store).ingest([Incoming(GateTopics("GZ01", "gz-north").punch, encode_punches(
                [gate.next(card=card, at=now - timedelta(hours=1))]), format_time(now))])
    lines = [line for line in bank.run("headcount", "--site", "GZ01").stdout.splitlines() if "since" in line]
    assert len(lines) == 2
    assert len({width(line[:line.index("since")]) for line in lines}) == 1, lines
