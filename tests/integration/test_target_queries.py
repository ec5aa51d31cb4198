"""Target figures from a real database (SQLite, and PostgreSQL when set), and ``hnte targets``."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from hnte.config.city import load_city
from hnte.flows.cli import UserError
from hnte.flows.cli_targets import targets
from hnte.models.stages import PIPELINE
from hnte.models.tables import Application, Batch, Certificate, Enterprise, StageEvent
from hnte.models.target_queries import (
    city_figures,
    district_figures,
    pass_rates,
    pipeline_by_district,
    rate_table,
    recognitions_by_district,
    renewal_counts,
    still_to_renew,
    still_to_renew_counts,
    stock_by_district,
    stock_on_two_days,
)
from hnte.models.targets import DistrictFigures, chance_of_certification

SHINAN, SHIBEI = "370202", "370203"
YEAR = 2021
AS_OF = date(2021, 6, 30)
LAST_YEAR_END = date(2020, 12, 31)
CITY = load_city()
DEFAULTS = CITY.projection.default_pass_rate_percent


def code(n: int) -> str:
    return f"91370200{n:010d}"


class World:
    """Rows inserted straight into the tables, flushed, never committed by the queries."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.numbers = 0

    def enterprise(self, n: int, district: str = SHINAN, name: str | None = None) -> str:
        self.session.add(
            Enterprise(
                credit_code=code(n),
                name=name or f"企业{n}",
                district_code=district,
                registered_on=date(2010, 1, 1),
                tech_field="电子信息",
            )
        )
        self.session.flush()
        return code(n)

    def batch(self, year: int) -> str:
        batch = f"{year}-9"
        if self.session.get(Batch, batch) is None:
            self.session.add(
                Batch(
                    code=batch,
                    year=year,
                    sequence=9,
                    title=f"{year}年测试批",
                    seed=1,
                    application_deadline=date(year, 5, 31),
                )
            )
            self.session.flush()
        return batch

    def application(
        self,
        n: int,
        stage: str = "submitted",
        *,
        kind: str = "first_time",
        batch: str = "2021-1",
        district: str = SHINAN,
    ) -> int:
        if self.session.get(Enterprise, code(n)) is None:
            self.enterprise(n, district)
        app = Application(
            batch_code=batch,
            credit_code=code(n),
            district_code=district,
            kind=kind,
            stage=stage,
            applied_on=date(2021, 5, 1),
            staff_total=100,
            staff_tech=20,
            revenue_y1_fen=100_000,
            rd_y1_fen=10_000,
            rd_domestic_fen=10_000,
            hightech_revenue_fen=80_000,
        )
        self.session.add(app)
        self.session.flush()
        assert app.id is not None
        return app.id

    def certificate(
        self,
        n: int,
        issued: date,
        *,
        district: str = SHINAN,
        revoked: date | None = None,
        application_id: int | None = None,
    ) -> str:
        self.numbers += 1
        number = f"GR{issued.year}37{self.numbers:05d}"
        self.session.add(
            Certificate(
                number=number,
                credit_code=code(n),
                district_code=district,
                application_id=application_id,
                issued_on=issued,
                expires_on=issued.replace(year=issued.year + 3),
                revoked_on=revoked,
            )
        )
        self.session.flush()
        return number

    def event(self, application_id: int, source: str, target: str, on: date) -> None:
        self.session.add(
            StageEvent(
                application_id=application_id,
                from_stage=source,
                to_stage=target,
                at=datetime(on.year, on.month, on.day, tzinfo=UTC),
                business_date=on,
                actor="test",
            )
        )
        self.session.flush()


@pytest.fixture
def world(any_engine: Engine) -> Iterator[World]:
    with Session(any_engine) as session:
        yield World(session)


def figures_of(world: World, district: str = SHINAN) -> DistrictFigures:
    rows = district_figures(world.session, year=YEAR, as_of=AS_OF, city=CITY)
    return next(d for d in rows if d.code == district)


def test_stock_counts_an_enterprise_with_overlapping_renewal_certificates_once(
    world: World,
) -> None:
    world.certificate(1, date(2018, 8, 1))  # runs to 2021-08-01
    world.certificate(1, date(2021, 5, 10))  # renewed early: both valid on AS_OF
    world.certificate(2, date(2020, 1, 1), district=SHIBEI)
    assert stock_by_district(world.session, on=AS_OF) == {SHINAN: 1, SHIBEI: 1}
    assert figures_of(world).stock == 1


def test_expired_revoked_and_not_yet_issued_certificates_are_not_in_the_stock(
    world: World,
) -> None:
    world.certificate(1, date(2019, 1, 1))  # valid
    world.certificate(2, date(2018, 3, 1))  # expired 2021-03-01
    world.certificate(3, date(2018, 6, 30))  # expires on AS_OF itself
    world.certificate(4, date(2019, 4, 1), revoked=date(2021, 4, 1))
    world.certificate(5, date(2020, 2, 1), revoked=date(2021, 9, 1))  # revoked after AS_OF
    world.certificate(6, date(2021, 7, 1))  # issued after AS_OF
    assert stock_by_district(world.session, on=AS_OF) == {SHINAN: 2}


def test_start_stock_is_the_stock_at_last_year_end(world: World) -> None:
    world.certificate(1, date(2018, 3, 1))  # valid on 2020-12-31, expired since
    world.certificate(2, date(2017, 12, 31))  # expired on 2020-12-31 itself
    world.certificate(3, date(2019, 4, 1), revoked=date(2020, 6, 1))
    world.certificate(4, date(2020, 5, 1))
    world.certificate(5, date(2021, 1, 5))  # new this year
    d = figures_of(world)
    assert (d.start_stock, d.stock, d.net_increase) == (2, 2, 0)
    assert stock_by_district(world.session, on=LAST_YEAR_END) == {SHINAN: 2}


def test_start_stock_falls_back_to_the_target_file_when_no_certificate_was_valid(
    world: World,
) -> None:
    world.certificate(1, date(2021, 3, 1))
    d = figures_of(world)
    shinan = next(x for x in CITY.districts if x.code == SHINAN)
    assert d.start_stock == shinan.stock_goal - shinan.net_increase == 395
    assert (d.stock, d.net_increase) == (396, 1)
    city = city_figures(world.session, year=YEAR, as_of=AS_OF, city=CITY)
    assert city.total.start_stock == CITY.target.start_stock
    assert city.total.stock == CITY.target.start_stock + 1


def test_new_and_re_recognitions_follow_the_application_kind(world: World) -> None:
    first = world.application(1, "certified")
    renewal = world.application(2, "certified", kind="renewal")
    world.certificate(1, date(2021, 3, 1), application_id=first)
    world.certificate(2, date(2021, 4, 1), application_id=renewal)
    world.certificate(3, date(2021, 2, 1))  # no application: first-time
    world.certificate(4, date(2020, 11, 1))  # last year
    world.certificate(5, date(2021, 8, 1))  # after AS_OF
    assert recognitions_by_district(world.session, year=YEAR, as_of=AS_OF) == {SHINAN: (2, 1)}
    d = figures_of(world)
    assert (d.new_recognitions, d.re_recognitions) == (2, 1)


def test_still_to_renew_lists_expiring_certificates_nobody_has_renewed(world: World) -> None:
    world.enterprise(1, name="甲科技有限公司")
    a = world.certificate(1, date(2018, 9, 1))  # no application: listed
    world.certificate(2, date(2018, 9, 1))
    world.application(2, "expert_review", kind="renewal")  # renewing: not listed
    c = world.certificate(3, date(2018, 3, 1))
    world.application(3, "rejected", kind="renewal")  # rejected: listed, expired already
    world.certificate(4, date(2018, 5, 1))
    world.certificate(4, date(2021, 4, 20))  # newer certificate: not listed
    world.certificate(5, date(2019, 1, 15))  # expires next year
    world.certificate(6, date(2018, 10, 1), revoked=date(2021, 5, 1))  # revoked
    g = world.certificate(7, date(2018, 11, 1))  # no enterprise row: name ""
    h = world.certificate(8, date(2018, 8, 1))
    world.application(8, "approval", batch=world.batch(2020))  # last year's batch
    i = world.certificate(9, date(2018, 7, 1))
    world.application(9, "withdrawn", kind="renewal")
    j = world.certificate(10, date(2018, 12, 1), district=SHIBEI)

    due = still_to_renew(world.session, year=YEAR, as_of=AS_OF)
    assert [(x.district_code, x.certificate_number) for x in due] == [
        (SHINAN, c),
        (SHINAN, i),
        (SHINAN, h),
        (SHINAN, a),
        (SHINAN, g),
        (SHIBEI, j),
    ]
    first = due[3]
    assert (first.credit_code, first.name, first.expires_on) == (
        code(1),
        "甲科技有限公司",
        date(2021, 9, 1),
    )
    assert due[4].name == ""
    assert [
        x.certificate_number
        for x in still_to_renew(world.session, year=YEAR, as_of=AS_OF, district_code=SHIBEI)
    ] == [j]
    d = figures_of(world)
    assert (d.expiring_unrenewed, d.expiring_ahead) == (5, 4)
    counted = still_to_renew_counts(world.session, year=YEAR, as_of=AS_OF)
    assert counted == {SHINAN: (5, 4), SHIBEI: (1, 1)}
    assert renewal_counts(due, as_of=AS_OF) == counted
    with_list = district_figures(world.session, year=YEAR, as_of=AS_OF, city=CITY, due=due)
    assert with_list == district_figures(world.session, year=YEAR, as_of=AS_OF, city=CITY)


def test_the_stock_on_two_days_is_the_stock_on_each(world: World) -> None:
    world.certificate(1, date(2018, 8, 1))  # both days
    world.certificate(1, date(2021, 5, 10))  # renewed early: counted once
    world.certificate(2, date(2018, 3, 1))  # last year end only
    world.certificate(3, date(2021, 2, 1), district=SHIBEI)  # AS_OF only: none there before
    world.certificate(4, date(2019, 4, 1), revoked=date(2021, 4, 1))  # last year end only
    world.certificate(5, date(2017, 12, 31))  # expired on last year end itself
    world.certificate(6, date(2021, 7, 1))  # neither
    now, start = stock_on_two_days(world.session, days=(AS_OF, LAST_YEAR_END))
    assert now == stock_by_district(world.session, on=AS_OF) == {SHINAN: 1, SHIBEI: 1}
    assert start == stock_by_district(world.session, on=LAST_YEAR_END) == {SHINAN: 3}


def test_pipeline_counts_open_applications_of_the_year_by_district_and_stage(
    world: World,
) -> None:
    for n, stage in enumerate(
        [
            "submitted",
            "submitted",
            "expert_review",
            "public_notice",
            "objection_review",
            "certified",
            "rejected",
            "withdrawn",
        ],
        start=1,
    ):
        world.application(n, stage)
    world.application(20, "formal_check", batch="2021-2")
    world.application(21, "approval", batch=world.batch(2020))
    world.application(30, "approval", district=SHIBEI)
    world.certificate(4, date(2018, 10, 1))  # in notice, certificate ends 2021-10-01
    world.certificate(1, date(2020, 3, 1))  # submitted, already covered to 2023

    pipelines = pipeline_by_district(world.session, year=YEAR, as_of=AS_OF)
    assert pipelines[SHINAN].by_stage == {
        "submitted": 2,
        "formal_check": 1,
        "expert_review": 1,
        "public_notice": 1,
        "objection_review": 1,
    }
    assert pipelines[SHINAN].covered == {"submitted": 1}
    assert pipelines[SHINAN].renewing == 1
    assert pipelines[SHIBEI].by_stage == {"approval": 1}

    d = figures_of(world)
    assert list(d.pipeline) == [s.value for s in PIPELINE]
    assert d.pipeline_total == 6 and d.renewing == 1
    rates = {s: p / 100 for s, p in DEFAULTS.items()}
    expected_new = sum(
        n * chance_of_certification(s, rates)
        for s, n in {
            "submitted": 1,  # the other one is covered
            "formal_check": 1,
            "expert_review": 1,
            "public_notice": 1,
            "objection_review": 1,
        }.items()
    )
    assert d.stock == 2
    assert d.projection == pytest.approx(2 + expected_new - 1)


def test_pass_rates_fall_back_to_defaults_without_history(world: World) -> None:
    app = world.application(1, "expert_review")
    world.event(app, "formal_check", "expert_review", date(2021, 6, 1))
    rates = pass_rates(world.session, year=YEAR, defaults=DEFAULTS)
    assert rates == pytest.approx({s: p / 100 for s, p in DEFAULTS.items()})
    table = rate_table(world.session, year=YEAR, defaults=DEFAULTS)
    assert table.observed["formal_check"] == 1 and not any(table.from_history.values())
    assert table.inspected_share == 1.0


def test_pass_rates_come_from_history_where_30_applications_left_a_stage(world: World) -> None:
    batch = world.batch(2020)
    day = date(2020, 7, 1)
    for n in range(50):
        app = world.application(100 + n, "certified", batch=batch)
        if n < 10:
            world.event(app, "formal_check", "rejected", day)
            continue
        world.event(app, "formal_check", "expert_review", day)
        if n < 14:
            world.event(app, "expert_review", "rejected", day)
        elif n < 26:
            world.event(app, "expert_review", "onsite_inspection", day)
            world.event(app, "onsite_inspection", "approval", day)
        else:
            world.event(app, "expert_review", "approval", day)
    # next year's trail is not history for 2021
    for n in range(10):
        app = world.application(200 + n, "rejected", batch=world.batch(2022))
        world.event(app, "formal_check", "rejected", date(2022, 7, 1))

    table = rate_table(world.session, year=YEAR, defaults=DEFAULTS)
    assert table.rates["formal_check"] == pytest.approx(40 / 50)
    assert table.rates["expert_review"] == pytest.approx(36 / 40)
    assert table.rates["onsite_inspection"] == pytest.approx(DEFAULTS["onsite_inspection"] / 100)
    assert table.from_history["formal_check"] and not table.from_history["onsite_inspection"]
    assert table.observed["onsite_inspection"] == 12
    assert table.inspected_share == pytest.approx(12 / 36)


def test_as_of_outside_the_year_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="not in 2021"):
        district_figures(world.session, year=YEAR, as_of=date(2022, 1, 1), city=CITY)


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """hnte (test)."""

    app.command("targets")(targets)
    return app


def test_targets_json_reports_every_figure_and_the_full_still_to_renew_list(
    engine: Engine, settings_env: str
) -> None:
    with Session(engine) as session:
        w = World(session)
        for n in range(12):
            w.enterprise(n, name=f"到期企业{n:02d}")
            w.certificate(n, date(2018, 9, 1))
        w.certificate(50, date(2020, 1, 1), district=SHIBEI)
        w.application(51, "public_notice", district=SHIBEI)
        session.commit()

    result = CliRunner().invoke(
        _cli(), ["targets", "--year", "2021", "--as-of", "2021-06-30", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["year"], data["as_of"]) == (2021, "2021-06-30")
    assert data["pass_rates"]["approval"] == {"rate": 0.98, "from_history": False, "observed": 0}
    shinan = next(d for d in data["districts"] if d["code"] == SHINAN)
    expected = {
        "name": "市南区",
        "stock": 12,
        "start_stock": 12,
        "net_increase": 0,
        "target_net": 25,
        "target_stock": 420,
        "expiring_unrenewed": 12,
        "expiring_ahead": 12,
        "projection": 0.0,
        "gap": 420.0,
        "behind": True,
        "late": True,
        "status": "落后、滞后",
    }
    assert {key: shinan[key] for key in expected} == expected
    assert len(shinan["still_to_renew"]) == 12
    assert shinan["still_to_renew"][0] == {
        "credit_code": code(0),
        "name": "到期企业00",
        "certificate_number": "GR20183700001",
        "expires_on": "2021-09-01",
    }
    shibei = next(d for d in data["districts"] if d["code"] == SHIBEI)
    assert shibei["pipeline"]["public_notice"] == 1 and shibei["pipeline_total"] == 1
    assert shibei["projection"] == pytest.approx(1.99)  # 1 + 0.99
    assert data["city"]["stock"] == 13 and data["city"]["target_stock"] == 4600
    assert data["districts"][0]["rank"] == 1


def test_targets_table_shows_the_totals_and_where_to_find_the_list(
    engine: Engine, settings_env: str
) -> None:
    with Session(engine) as session:
        w = World(session)
        for n in range(12):
            w.certificate(n, date(2018, 9, 1))
        session.commit()
    result = CliRunner().invoke(_cli(), ["targets", "--as-of", "2021-06-30"])
    assert result.exit_code == 0, result.output
    assert "年度高企目标进度" in result.stdout
    assert "待重新认定共 12 家" in result.stdout and "--due-csv" in result.stdout
    assert "2021-09-01" not in result.stdout  # the list is not on screen


def test_targets_due_csv_writes_the_whole_list_for_excel(
    engine: Engine, settings_env: str, tmp_path: Path
) -> None:
    with Session(engine) as session:
        w = World(session)
        w.enterprise(0, name="=HYPERLINK(1)")
        for n in range(12):
            w.certificate(n, date(2018, 9, 1))
        w.certificate(20, date(2018, 10, 1), district=SHIBEI)
        session.commit()
    path = tmp_path / "due.csv"
    result = CliRunner().invoke(
        _cli(), ["targets", "--as-of", "2021-06-30", "--due-csv", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert str(path) in result.stdout.replace("\n", "")
    raw = path.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["区市", "统一社会信用代码", "企业名称", "证书编号", "到期日"]
    assert len(rows) == 1 + 13
    assert rows[1] == ["市南区", code(0), "'=HYPERLINK(1)", "GR20183700001", "2021-09-01"]
    assert rows[-1][:2] == ["市北区", code(20)]


def test_targets_due_csv_must_be_a_csv_in_an_existing_folder(
    engine: Engine, settings_env: str, tmp_path: Path
) -> None:
    for path in (tmp_path / "due.xlsx", tmp_path / "missing" / "due.csv"):
        result = CliRunner().invoke(_cli(), ["targets", "--due-csv", str(path)])
        assert result.exit_code != 0
        assert isinstance(result.exception, UserError)
        assert not path.exists()


def test_hnte_targets_imports_neither_prefect_nor_alembic_nor_other_commands(
    engine: Engine, db_url: str
) -> None:
    script = (
        "import sys\n"
        "sys.argv = ['hnte', 'targets', '--as-of', '2021-06-30', '--json']\n"
        "from hnte.flows import cli\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "sys.stderr.write(' '.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "HNTE_DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["year"] == 2021
    loaded = done.stderr.split()
    assert "hnte.flows.cli_targets" in loaded
    for unwanted in ("prefect", "alembic", "hnte.flows.cli_record", "hnte.services.decisions"):
        assert unwanted not in loaded


def test_targets_refuses_an_as_of_outside_the_year(engine: Engine, settings_env: str) -> None:
    result = CliRunner().invoke(_cli(), ["targets", "--year", "2021", "--as-of", "2020-05-01"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)
