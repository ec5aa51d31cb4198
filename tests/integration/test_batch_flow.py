"""A batch of 250 applications goes from import to certificate through the real Prefect
flow, every human decision recorded from an operator's file (or the CLI), and each
application ends as its synthetic ``plan`` intends, with a complete, consistent trail."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from hnte import synthetic
from hnte.config.city import load_city
from hnte.config.settings import get_settings
from hnte.flows import cli
from hnte.flows.batch_review import batch_review
from hnte.flows.cli_common import today as cli_today
from hnte.models.db import get_engine, make_engine, unit_of_work
from hnte.models.scoring import drawn_at_random
from hnte.models.stages import Stage, find_transition
from hnte.services.decisions import KINDS, recommend_all, record_from_file
from hnte.services.experts import upsert_experts
from hnte.services.importing import import_applications
from hnte.services.review import CLOCK, RULES, SYSTEM
from hnte.services.setup import init_database

BATCH = "2021-1"
SEED = 4  # every plan occurs at least twice among 250 applications with this seed
OPERATOR = "市局操作员 王敏"
OBJECTIONS_ACTOR = "异议处理 / objections"

IMPORTED_ON = date(2021, 5, 20)
REVIEWED_ON = date(2021, 6, 10)  # district review and formal check; panels drawn
SCORED_ON = date(2021, 7, 20)
INSPECTED_ON = date(2021, 8, 20)
APPROVED_ON = date(2021, 9, 24)  # the public notice opens
OBJECTED_ON = date(2021, 9, 28)
RESOLVED_ON = date(2021, 10, 8)
CERTIFIED_ON = date(2021, 10, 13)
# Opened Friday 24 Sep 2021, the 10 working days are 24 Sep, Sun 26 Sep (a swapped
# workday), 27–30 Sep, 8 Oct, Sat 9 Oct (swapped), 11 and 12 Oct: National Day skipped.
NOTICE_ENDS = date(2021, 10, 12)

RETURN_REASON = "申报材料不全，缺少近三年财务审计报告"
WITHDRAW_REASON = "企业主动申请撤回"
INSPECTION_NOTE = "研发场地与申报材料不符"
NOT_APPROVED_REASON = "高新技术产品收入核算不实"
OBJECTION = "知识产权权属存在争议"
UPHELD_NOTE = "经核查异议属实"
DISMISSED_NOTE = "经核查异议不实"

S = Stage
FINAL_STAGE = {
    "pass": S.CERTIFIED,
    "objection_dismissed": S.CERTIFIED,
    "fake": S.CERTIFIED,
    "returned": S.REJECTED,
    "ineligible": S.REJECTED,
    "low_score": S.REJECTED,
    "inspection_fail": S.REJECTED,
    "not_approved": S.REJECTED,
    "objection_upheld": S.REJECTED,
    "withdraw": S.WITHDRAWN,
}
_REVIEWED = [S.SUBMITTED, S.DISTRICT_REVIEW, S.FORMAL_CHECK, S.EXPERT_REVIEW]
_NOTICE = [S.APPROVAL, S.PUBLIC_NOTICE]


# --- the operator's files --------------------------------------------------------------


def decision_file(path: Path, kind: str, rows: Sequence[Mapping[str, object]]) -> Path:
    """A file as an operator fills it in: the kind's Chinese headers, one row per decision."""
    spec = KINDS[kind]
    header = [spec.label(key) for key in spec.columns]
    cells = [[str(row.get(key, "")) for key in spec.columns] for row in rows]
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(cells)
        return path
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet(spec.title_zh)
    sheet.write_row(0, 0, header)
    for r, values in enumerate(cells, start=1):
        for c, value in enumerate(values):
            if value:
                sheet.write_string(r, c, value)
    workbook.close()
    return path


def sub_scores(plan: str, seat: int) -> tuple[int, int, int, int]:
    """Totals 62–64 for a low score, 72–74 (borderline, so inspected) for a failed
    inspection, 79–81 otherwise: only flagged and randomly drawn ones are inspected."""
    growth = 13 + seat % 3
    if plan == "low_score":
        return 18, 20, 14, growth - 3
    if plan == "inspection_fail":
        return 22, 22, 15, growth
    return 25, 25, 16, growth


def score_row(code: str, expert: str, scores: Sequence[int]) -> dict[str, object]:
    keys = ("ip", "conversion", "rd_management", "growth")
    return {"expert_id": expert, "credit_code": code, **dict(zip(keys, scores, strict=True))}


def mean(totals: Sequence[int]) -> Decimal:
    return (Decimal(sum(totals)) / len(totals)).quantize(Decimal("0.01"), ROUND_HALF_UP)


# --- the year, run once for the module ----------------------------------------------------


@dataclass
class Run:
    as_of: date
    flow_run_id: str
    result: dict[str, Any]


@dataclass
class Year:
    apps: dict[str, synthetic.SyntheticApplication]
    runs: list[Run] = field(default_factory=list)
    withdrawn_on: date | None = None
    panel_means: dict[str, Decimal] = field(default_factory=dict)
    applications: dict[str, Any] = field(default_factory=dict)  # code -> row
    events: dict[str, list[Any]] = field(default_factory=dict)  # code -> rows, in order
    certificates: list[Any] = field(default_factory=list)
    run_events: dict[str, Counter[tuple[str, str, str]]] = field(default_factory=dict)

    def with_plan(self, *plans: str) -> list[str]:
        return [code for code, a in self.apps.items() if a.plan in plans]


def run_flow(year: Year, as_of: date) -> dict[str, Any]:
    state = batch_review(BATCH, as_of=as_of, return_state=True)
    assert state.is_completed(), state
    result = state.result()
    year.runs.append(Run(as_of, str(state.state_details.flow_run_id), result))
    return result


def record(engine: Engine, kind: str, path: Path, today: date) -> None:
    with unit_of_work(engine) as session:
        report = record_from_file(
            session,
            kind,
            path,
            batch_code=BATCH,
            operator=get_settings().operator_name(),
            today=today,
            strict=True,
        )
    assert report.committed and not report.errors, report.errors[:3]
    assert report.applied == report.rows > 0


def at_stage(engine: Engine, stage: Stage) -> list[str]:
    with engine.connect() as c:
        return list(
            c.execute(
                text("SELECT credit_code FROM application WHERE batch_code = :b AND stage = :s"),
                {"b": BATCH, "s": stage.value},
            ).scalars()
        )


def play_the_year(engine: Engine, folder: Path) -> Year:
    city = load_city()
    init_database(engine, city)
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    apps = synthetic.applications(250, seed=SEED, districts=shares, year=2021, fakes=4)
    year = Year({a.credit_code: a for a in apps})
    assert {a.plan for a in apps} == set(FINAL_STAGE)

    with unit_of_work(engine) as session:
        source = synthetic.write_xlsx(folder / "申报名单.xlsx", apps)
        report = import_applications(session, source, batch_code=BATCH, today=IMPORTED_ON)
        assert report.inserted == 250 and not report.errors
        pool = synthetic.experts(60, 15, seed=SEED, enterprise_codes=list(year.apps))
        upsert_experts(session, [(e.id, e.name, e.kind, e.employer) for e in pool])
        session.commit()

    recommendations = [
        {"credit_code": code, "decision": "退回", "reason": RETURN_REASON}
        if a.plan == "returned"
        else {"credit_code": code, "decision": "推荐"}
        for code, a in year.apps.items()
    ]
    record(
        engine,
        "recommendations",
        decision_file(folder / "区市推荐.xlsx", "recommendations", recommendations),
        REVIEWED_ON,
    )
    run_flow(year, REVIEWED_ON)

    withdrawn = year.with_plan("withdraw")
    result = CliRunner().invoke(
        cli.app, ["withdraw", *withdrawn, "--batch", BATCH, "--reason", WITHDRAW_REASON]
    )
    assert result.exit_code == 0, result.output
    year.withdrawn_on = cli_today()

    with engine.connect() as c:
        seats = c.execute(
            text(
                "SELECT a.credit_code, s.expert_id, s.seat FROM panel_seat s"
                " JOIN application a ON a.id = s.application_id"
                " WHERE a.batch_code = :b AND a.stage = 'expert_review' ORDER BY a.id, s.seat"
            ),
            {"b": BATCH},
        ).all()
    left_out = year.with_plan("returned", "ineligible", "withdraw")
    assert {code for code, _, _ in seats} == set(year.apps) - set(left_out)
    scores, totals = [], {}
    for code, expert, seat in seats:
        given = sub_scores(year.apps[code].plan, seat)
        scores.append(score_row(code, expert, given))
        totals.setdefault(code, []).append(sum(given))
    year.panel_means = {code: mean(t) for code, t in totals.items()}
    record(engine, "scores", decision_file(folder / "专家评分.csv", "scores", scores), SCORED_ON)
    run_flow(year, SCORED_ON)

    inspections = [
        {"credit_code": code, "outcome": "不通过", "note": INSPECTION_NOTE}
        if year.apps[code].plan == "inspection_fail"
        else {"credit_code": code, "outcome": "通过"}
        for code in at_stage(engine, S.ONSITE_INSPECTION)
    ]
    record(
        engine,
        "inspections",
        decision_file(folder / "现场考察.xlsx", "inspections", inspections),
        INSPECTED_ON,
    )
    run_flow(year, INSPECTED_ON)

    approvals = [
        {"credit_code": code, "decision": "不予批准", "reason": NOT_APPROVED_REASON}
        if year.apps[code].plan == "not_approved"
        else {"credit_code": code, "decision": "批准"}
        for code in at_stage(engine, S.APPROVAL)
    ]
    record(
        engine,
        "approvals",
        decision_file(folder / "审批.xlsx", "approvals", approvals),
        APPROVED_ON,
    )
    run_flow(year, APPROVED_ON)

    objected = year.with_plan("objection_dismissed", "objection_upheld")
    objections = [
        {"credit_code": code, "raised_on": "2021-09-27", "reason": OBJECTION} for code in objected
    ]
    record(
        engine,
        "objections",
        decision_file(folder / "公示异议.csv", "objections", objections),
        OBJECTED_ON,
    )
    run_flow(year, OBJECTED_ON)
    assert sorted(at_stage(engine, S.OBJECTION_REVIEW)) == sorted(objected)

    resolutions = [
        {
            "credit_code": code,
            "resolution": "成立" if year.apps[code].plan == "objection_upheld" else "不成立",
            "note": UPHELD_NOTE if year.apps[code].plan == "objection_upheld" else DISMISSED_NOTE,
        }
        for code in objected
    ]
    record(
        engine,
        "objections",
        decision_file(folder / "异议处理.csv", "objections", resolutions),
        RESOLVED_ON,
    )
    run_flow(year, RESOLVED_ON)
    run_flow(year, CERTIFIED_ON)
    load_outcome(engine, year)
    return year


def load_outcome(engine: Engine, year: Year) -> None:
    with engine.connect() as c:
        for row in c.execute(
            text(
                "SELECT id, credit_code, district_code, stage, decision_reason, score,"
                " screening_flags, selected_for_inspection, inspection_reason,"
                " notice_starts, notice_ends FROM application WHERE batch_code = :b"
            ),
            {"b": BATCH},
        ):
            year.applications[row.credit_code] = row
        for row in c.execute(
            text(
                "SELECT a.credit_code, a.district_code, e.from_stage, e.to_stage, e.actor,"
                " e.reason, e.flow_run_id, e.business_date FROM stage_event e"
                " JOIN application a ON a.id = e.application_id ORDER BY e.id"
            )
        ):
            year.events.setdefault(row.credit_code, []).append(row)
            if row.flow_run_id:
                year.run_events.setdefault(row.flow_run_id, Counter())[
                    (row.from_stage, row.to_stage, row.district_code)
                ] += 1
        year.certificates = c.execute(
            text(
                "SELECT number, credit_code, district_code, application_id, issued_on,"
                " expires_on, revoked_on FROM certificate ORDER BY number"
            )
        ).all()


@pytest.fixture(scope="module")
def year(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Year]:
    """The whole review of one batch, played once; the tests read what it left behind."""
    folder = tmp_path_factory.mktemp("batch-flow")
    url = f"sqlite:///{folder / 'hnte.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HNTE_DATABASE_URL", url)
        env.setenv("HNTE_OPERATOR", OPERATOR)
        env.delenv("HNTE_FAULT_AT", raising=False)
        get_settings.cache_clear()
        get_engine.cache_clear()
        engine = make_engine(url)
        try:
            played = play_the_year(engine, folder)
            get_engine().dispose()  # the flow's engine; the tests only read ``played``
            yield played
        finally:
            engine.dispose()
            get_engine.cache_clear()
            get_settings.cache_clear()


# --- what each application went through ----------------------------------------------------


def expected_path(plan: str, inspected: bool) -> list[Stage]:
    if plan == "returned":
        return [S.SUBMITTED, S.DISTRICT_REVIEW, S.REJECTED]
    if plan == "ineligible":
        return [S.SUBMITTED, S.DISTRICT_REVIEW, S.FORMAL_CHECK, S.REJECTED]
    if plan == "withdraw":
        return [*_REVIEWED, S.WITHDRAWN]
    if plan == "low_score":
        return [*_REVIEWED, S.REJECTED]
    reviewed = [*_REVIEWED, S.ONSITE_INSPECTION] if inspected else _REVIEWED
    if plan == "inspection_fail":
        return [*reviewed, S.REJECTED]
    if plan == "not_approved":
        return [*reviewed, S.APPROVAL, S.REJECTED]
    if plan == "objection_upheld":
        return [*reviewed, *_NOTICE, S.OBJECTION_REVIEW, S.REJECTED]
    if plan == "objection_dismissed":
        return [*reviewed, *_NOTICE, S.OBJECTION_REVIEW, S.PUBLIC_NOTICE, S.CERTIFIED]
    return [*reviewed, *_NOTICE, S.CERTIFIED]


def expected_actor(source: Stage, target: Stage) -> str:
    if target == S.WITHDRAWN or source in (
        S.DISTRICT_REVIEW,
        S.ONSITE_INSPECTION,
        S.APPROVAL,
    ):
        return OPERATOR
    if source == S.SUBMITTED or (source, target) == (S.PUBLIC_NOTICE, S.OBJECTION_REVIEW):
        return SYSTEM
    if source == S.OBJECTION_REVIEW:
        return OBJECTIONS_ACTOR
    if source == S.PUBLIC_NOTICE:
        return CLOCK
    return RULES


def _yuan(cell: str) -> int:
    return int(cell.replace(".", ""))


def failed_rule_words(cells: Mapping[str, str]) -> tuple[str, ...]:
    """What the formal-check reason must say, worked out from the application's own cells."""
    if date.fromisoformat(cells["注册日期"]) > date(2020, 5, 31):  # applied on 2021-05-31
        return ("注册成立于", "不满一年")
    if cells["I类知识产权数"] == cells["II类知识产权数"] == "0":
        return ("未拥有支持主要产品（服务）的Ⅰ类或Ⅱ类知识产权",)
    if cells["重大事故"] == "是":
        return ("发生过重大安全、重大质量事故或严重环境违法行为",)
    if int(cells["科技人员数"]) * 10 < int(cells["职工总数"]):
        return ("科技人员占职工总数", "低于 10%")
    if _yuan(cells["高新技术产品收入"]) * 10 < _yuan(cells["近一年销售收入"]) * 6:
        return ("高新技术产品（服务）收入占比", "低于 60%")
    return ("研发费用占比", "，低于 ")


def test_every_application_ends_in_the_stage_its_plan_intends(year: Year) -> None:
    wrong = {
        code: (a.plan, year.applications[code].stage)
        for code, a in year.apps.items()
        if year.applications[code].stage != FINAL_STAGE[a.plan]
    }
    assert not wrong
    finals = Counter(year.applications[code].stage for code in year.apps)
    assert finals[S.CERTIFIED] > 150 and finals[S.REJECTED] > 40 and finals[S.WITHDRAWN] > 0


def test_every_rejection_and_withdrawal_gives_the_reason_its_plan_implies(year: Year) -> None:
    for code, a in year.apps.items():
        reason = year.applications[code].decision_reason or ""
        expected: tuple[str, ...] = {
            "returned": (f"区市退回：{RETURN_REASON}",),
            "ineligible": ("形式审查不通过：", *failed_rule_words(a.cells)),
            "withdraw": (WITHDRAW_REASON,),
            "low_score": (f"专家评审平均分 {year.panel_means.get(code)}，低于 71 分",),
            "inspection_fail": (f"现场考察不通过：{INSPECTION_NOTE}",),
            "not_approved": (f"不予批准：{NOT_APPROVED_REASON}",),
            "objection_upheld": (f"异议成立：{UPHELD_NOTE}",),
        }.get(a.plan, ())
        missing = [words for words in expected if words not in reason]
        assert not missing, (code, a.plan, reason)


def test_the_panel_score_is_the_mean_of_the_recorded_expert_scores(year: Year) -> None:
    assert len(year.panel_means) > 200
    for code, expected in year.panel_means.items():
        assert year.applications[code].score == pytest.approx(float(expected)), code


def test_every_trail_is_one_path_through_the_stage_table_with_one_event_per_move(
    year: Year,
) -> None:
    for code, a in year.apps.items():
        app = year.applications[code]
        pairs = [(Stage(e.from_stage), Stage(e.to_stage)) for e in year.events[code]]
        assert all(find_transition(*p) for p in pairs), (code, pairs)
        stages = [pairs[0][0], *(target for _, target in pairs)]
        assert all(pairs[i][1] == pairs[i + 1][0] for i in range(len(pairs) - 1)), pairs
        assert len(set(pairs)) == len(pairs), (code, pairs)
        assert stages == expected_path(a.plan, bool(app.selected_for_inspection)), (code, a.plan)
        assert stages[-1] == app.stage


def test_manual_moves_name_the_operator_and_flow_moves_their_own_flow_run(year: Year) -> None:
    run_of = {run.as_of: run.flow_run_id for run in year.runs}
    assert len(set(run_of.values())) == len(year.runs) == 7
    for code, events in year.events.items():
        for e in events:
            source, target = Stage(e.from_stage), Stage(e.to_stage)
            assert e.actor == expected_actor(source, target), (code, e)
            if target == S.WITHDRAWN:
                assert e.flow_run_id is None
                assert str(e.business_date) == str(year.withdrawn_on)
            else:
                assert e.flow_run_id == run_of[date.fromisoformat(str(e.business_date))], e


def test_fakes_are_flagged_by_screening_and_sent_to_on_site_inspection(year: Year) -> None:
    fakes = year.with_plan("fake")
    assert len(fakes) == 4
    for code in fakes:
        app = year.applications[code]
        assert app.screening_flags and app.selected_for_inspection, code
        assert app.inspection_reason == "flagged"
        assert (S.EXPERT_REVIEW.value, S.ONSITE_INSPECTION.value) in {
            (e.from_stage, e.to_stage) for e in year.events[code]
        }
    honest = [c for c, a in year.apps.items() if a.plan == "pass"]
    assert sum(bool(year.applications[c].screening_flags) for c in honest) < len(honest) / 10


def test_only_flagged_borderline_and_randomly_drawn_applications_are_inspected(
    year: Year,
) -> None:
    reasons: Counter[str] = Counter()
    for code, app in year.applications.items():
        if not app.selected_for_inspection:
            continue
        plan = year.apps[code].plan
        if app.screening_flags:
            expected = "flagged"
        elif plan == "inspection_fail":
            expected = "borderline"
        else:
            expected = "random"
        assert app.inspection_reason == expected, (code, plan)
        reasons[expected] += 1
    # of the passing ones neither flagged nor borderline: exactly those the seeded
    # per-application draw picks (about 10 %)
    rest = [
        app
        for code, app in year.applications.items()
        if app.score is not None
        and app.score >= 71
        and not app.screening_flags
        and year.apps[code].plan != "inspection_fail"
    ]
    seed = load_city().batch_by_code(BATCH).seed  # type: ignore[union-attr]
    drawn = [a for a in rest if drawn_at_random(seed, a.id, 10)]
    assert reasons["random"] == len(drawn) > 0
    assert all(a.selected_for_inspection for a in drawn)
    assert reasons["borderline"] == len(year.with_plan("inspection_fail"))


def test_the_public_notice_lasts_ten_working_days_on_the_chinese_calendar(year: Year) -> None:
    noticed = [a for a in year.applications.values() if a.notice_starts is not None]
    assert len(noticed) > 150
    for app in noticed:
        assert str(app.notice_starts) == APPROVED_ON.isoformat()
        assert str(app.notice_ends) == NOTICE_ENDS.isoformat()


def test_each_certified_application_has_one_certificate_in_number_order_for_three_years(
    year: Year,
) -> None:
    certified = sorted(
        (a.id, code, a.district_code)
        for code, a in year.applications.items()
        if a.stage == S.CERTIFIED
    )
    assert [(c.application_id, c.credit_code, c.district_code) for c in year.certificates] == (
        certified
    )
    assert [c.number for c in year.certificates] == [
        f"GR202137{n:05d}" for n in range(1, len(certified) + 1)
    ]
    for c in year.certificates:
        assert str(c.issued_on) == CERTIFIED_ON.isoformat()
        assert str(c.expires_on) == date(2024, 10, 13).isoformat()
        assert c.revoked_on is None


def test_the_transitions_each_run_reports_per_district_sum_to_the_events_it_wrote(
    year: Year,
) -> None:
    for run in year.runs:
        reported = Counter(
            {
                (r["from"], r["to"], r["district_code"]): r["count"]
                for r in run.result["transitions"]
            }
        )
        assert reported, run.as_of
        assert reported == year.run_events[run.flow_run_id], run.as_of
        assert sum(reported.values()) == sum(s["moved"] for s in run.result["steps"])


def test_each_run_leaves_a_table_of_its_transitions_in_prefect(year: Year) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import Artifact

    with get_client(sync_client=True) as client:
        for run in year.runs:
            # Not client.read_artifacts: in prefect 3.8.8 it sends null for every parameter
            # left out (limit, sort, run filters), which its own server refuses with 422,
            # and an empty task run filter keeps only artifacts made inside a task.
            response = client.request(
                "POST",
                "/artifacts/filter",
                json={"artifacts": {"flow_run_id": {"any_": [run.flow_run_id]}}},
            )
            artifacts = Artifact.model_validate_list(response.json())
            assert [(a.key, a.type) for a in artifacts] == [("batch-review-2021-1", "table")]
            table = artifacts[0].data
            rows = json.loads(table) if isinstance(table, str) else table
            assert sum(r["count"] for r in rows) == sum(
                r["count"] for r in run.result["transitions"]
            )


# --- idempotence ------------------------------------------------------------------------


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as c:
        return c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_running_the_flow_twice_in_a_row_makes_no_second_transition(
    prefect_harness: None, engine: Engine, settings_env: str, tmp_path: Path
) -> None:
    shares = [
        synthetic.DistrictShare("370212", "崂山区", 2),
        synthetic.DistrictShare("370211", "西海岸新区", 1),
    ]
    apps = synthetic.applications(40, seed=SEED, districts=shares, year=2021, fakes=2)
    with unit_of_work(engine) as session:
        import_applications(
            session,
            synthetic.write_csv(tmp_path / "apps.csv", apps),
            batch_code=BATCH,
            today=IMPORTED_ON,
        )
        pool = synthetic.experts(30, 8, seed=SEED)
        upsert_experts(session, [(e.id, e.name, e.kind, e.employer) for e in pool])
        session.commit()
        recommend_all(
            session, batch_code=BATCH, district_code=None, operator=OPERATOR, today=REVIEWED_ON
        )

    first = batch_review(BATCH, as_of=REVIEWED_ON)
    assert sum(r["count"] for r in first["transitions"]) >= 3 * 40
    events, seats = _count(engine, "stage_event"), _count(engine, "panel_seat")
    assert seats > 0

    second = batch_review(BATCH, as_of=REVIEWED_ON)
    assert second["transitions"] == []
    assert all(s["moved"] == 0 for s in second["steps"])
    assert (_count(engine, "stage_event"), _count(engine, "panel_seat")) == (events, seats)

    # The expert review too: scores, selection for inspection and moves happen once.
    with engine.connect() as c:
        seated = c.execute(
            text(
                "SELECT a.credit_code, s.expert_id, s.seat FROM panel_seat s"
                " JOIN application a ON a.id = s.application_id"
            )
        ).all()
    scores = [score_row(code, e, sub_scores("pass", seat)) for code, e, seat in seated]
    record(engine, "scores", decision_file(tmp_path / "scores.csv", "scores", scores), SCORED_ON)
    assert batch_review(BATCH, as_of=SCORED_ON)["transitions"]
    events, state = _count(engine, "stage_event"), _applications(engine)
    again = batch_review(BATCH, as_of=SCORED_ON)
    assert again["transitions"] == []
    assert (_count(engine, "stage_event"), _applications(engine)) == (events, state)


def _applications(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        return [
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT id, stage, version, score, selected_for_inspection,"
                    " inspection_reason, decision_reason FROM application ORDER BY id"
                )
            )
        ]
