"""The main job as a new user runs it: `hnte demo`, at a small scale, and its numbers add up."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from hnte.flows.demo import year_end_counts
from hnte.models.db import make_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HNTE_")}
    env.update(COLUMNS="200", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_HOME=str(out.parent / "prefect"), PREFECT_LOGGING_LEVEL="WARNING")
    run = subprocess.run(
        [sys.executable, "-m", "hnte.flows.cli", "demo", "--out", str(out), "--scale", "0.05",
         "--seed", "7"],
        env=env, capture_output=True, text=True, timeout=600, cwd=out.parent,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run


def test_the_demo_prints_the_year_end_targets_and_what_it_wrote(demo) -> None:
    out, run = demo
    assert "年末目标完成情况" in run.stdout
    assert "全市合计" in run.stdout
    for district in ("市南区", "崂山区", "西海岸新区", "莱西市"):
        assert district in run.stdout
    assert "Traceback" not in run.stderr
    assert str(out / "hnte.db") in run.stdout


def test_every_application_ends_in_exactly_one_final_stage(demo) -> None:
    out, _ = demo
    engine = make_engine(f"sqlite:///{out / 'hnte.db'}")
    counts = year_end_counts(engine, 2021)
    with engine.connect() as c:
        stages = dict(c.exec_driver_sql(
            "SELECT stage, count(*) FROM application GROUP BY stage").all())
    assert counts["applications"] > 100
    assert counts["open"] == 0
    assert set(stages) <= {"certified", "rejected", "withdrawn"}
    assert sum(stages.values()) == counts["applications"]
    assert counts["certificates_issued"] == counts["certified"]


def test_the_stock_at_year_end_is_the_start_plus_new_minus_expired_minus_revoked(demo) -> None:
    out, _ = demo
    c = year_end_counts(make_engine(f"sqlite:///{out / 'hnte.db'}"), 2021)
    assert c["start_stock"] > 0 and c["newly_certified"] > 0 and c["expired_unrenewed"] > 0
    assert c["end_stock"] == (
        c["start_stock"] + c["newly_certified"] - c["expired_unrenewed"] - c["revoked"]
    )


def test_every_sent_notice_was_saved_as_an_eml_file(demo) -> None:
    out, _ = demo
    engine = make_engine(f"sqlite:///{out / 'hnte.db'}")
    with engine.connect() as c:
        sent = c.exec_driver_sql("SELECT count(*) FROM outbox WHERE status = 'sent'").scalar_one()
        queued = c.exec_driver_sql(
            "SELECT count(*) FROM outbox WHERE status != 'sent'").scalar_one()
        kinds = {k for (k,) in c.exec_driver_sql("SELECT DISTINCT kind FROM outbox")}
    emails = sorted((out / "emails").glob("*.eml"))
    with (out / "emails" / "index.csv").open(encoding="utf-8-sig") as handle:
        index = list(csv.DictReader(handle))
    assert queued == 0
    assert len(emails) == sent == len(index) > 0
    assert {"deadline_reminder", "overdue_notice", "weekly_digest", "city_summary",
            "batch_results", "behind_target"} <= kinds


def test_the_workbook_and_the_html_page_are_written(demo) -> None:
    out, _ = demo
    workbook = load_workbook(out / "高企认定年报-2021.xlsx")
    assert "汇总" in workbook.sheetnames
    html = (out / "高企认定年报-2021.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 2 and "<script" not in html
    assert (out / "inputs").is_dir() and any((out / "inputs").glob("*.xlsx"))
