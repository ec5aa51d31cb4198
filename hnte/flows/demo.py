"""``hnte demo``: a synthetic Qingdao-sized recognition year, run in simulated time
through the real code paths — file imports, decision files, ``batch_review`` flow runs,
the scheduler's jobs at their cron times, the outbox and a local SMTP server that saves
every email as an ``.eml`` file. Same seed, same year.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert, select, text, update
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import BatchConfig, CityConfig
from hnte.models.stages import Stage
from hnte.models.tables import Application, Certificate, Enterprise, PanelSeat

OPERATOR = "演示操作员"


# --- the local mail server ------------------------------------------------------------


class LocalSmtp:
    """The demo's mail server (``hnte.flows.demo_smtp``) in a child process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:  # a free loopback port
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> LocalSmtp:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hnte.flows.demo_smtp", str(self.port), str(self.folder)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the demo's mail server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def saved(self) -> int:
        return len(list(self.folder.glob("*.eml")))


# --- the simulated year ---------------------------------------------------------------


@dataclass
class YearLog:
    flow_runs: int = 0
    imported: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    jobs: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)
    sent: int = 0


@dataclass
class DemoResult:
    out: Path
    database: Path
    seconds: float
    log: YearLog
    files: dict[str, Path]
    year_end: date


@dataclass
class _BatchPlan:
    config: BatchConfig
    apps: list[synthetic.SyntheticApplication]
    late_districts: set[str]


def _scaled(value: int, scale: float) -> int:
    return max(1, round(value * scale))


def _insert_stock(engine: Engine, stock: list[synthetic.StockCertificate], year: int,
                  rng: random.Random) -> None:
    with engine.begin() as c:
        c.execute(insert(Enterprise), [
            {"credit_code": s.credit_code, "name": s.name, "district_code": s.district_code,
             "registered_on": s.registered_on, "tech_field": s.tech_field,
             "intermediary": None}
            for s in stock
        ])
        c.execute(insert(Certificate), [
            {"number": s.number, "credit_code": s.credit_code, "district_code": s.district_code,
             "application_id": None, "issued_on": s.issued_on, "expires_on": s.expires_on,
             "revoked_on": None}
            for s in stock
        ])
        # A few certificates are revoked during the year (e.g. found ineligible afterwards).
        for s in rng.sample([s for s in stock if s.expires_on.year > year], 3):
            c.execute(update(Certificate).where(Certificate.number == s.number)
                      .values(revoked_on=date(year, rng.randint(3, 9), 15)))


def _renewals_for(stock: list[synthetic.StockCertificate], year: int, rng: random.Random,
                  sizes: list[int]) -> list[list[synthetic.StockCertificate]]:
    """Split this year's expiring certificates that reapply (85 %) over the batches."""
    expiring = [s for s in stock if s.expires_on.year == year]
    rng.shuffle(expiring)
    reapplying = expiring[: int(len(expiring) * 0.85)]
    total = sum(sizes)
    parts, start = [], 0
    for size in sizes:
        share = round(len(reapplying) * size / total)
        parts.append(reapplying[start : start + share])
        start += share
    return parts


def _plan_batches(city: CityConfig, stock: list[synthetic.StockCertificate], seed: int,
                  scale: float, rng: random.Random) -> list[_BatchPlan]:
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    sizes = [_scaled(n, scale) for n in (1200, 1000, 600)]
    renewal_parts = _renewals_for(stock, city.city.year, rng, sizes)
    plans = []
    for batch, size, renewals in zip(city.batches, sizes, renewal_parts, strict=True):
        renewals = renewals[: max(0, size - 5)]
        apps = synthetic.applications(
            size, seed=seed, districts=shares, year=city.city.year,
            batch_sequence=batch.sequence,
            renewal_codes=[(s.credit_code, s.district_code) for s in renewals],
            fakes=max(2, size // 250),
        )
        by_code = {s.credit_code: s for s in renewals}
        for app in apps:  # a renewing enterprise keeps its name and registration date
            if app.credit_code in by_code:
                app.cells["企业名称"] = by_code[app.credit_code].name
                app.cells["注册日期"] = by_code[app.credit_code].registered_on.isoformat()
        late = set(rng.sample([d.code for d in city.districts], 2))
        plans.append(_BatchPlan(batch, apps, late))
    return plans


# --- decision files, written as people would send them --------------------------------


def _write(path: Path, headers: list[str], rows: list[list[str]]) -> Path:
    import xlsxwriter

    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, headers)
    for r, row in enumerate(rows, start=1):
        sheet.write_row(r, 0, row)
    book.close()
    return path


def _sub_scores(total: int) -> list[str]:
    ip = min(30, round(total * 0.3))
    conversion = min(30, round(total * 0.3))
    rd = min(20, round(total * 0.2))
    growth = max(0, min(20, total - ip - conversion - rd))
    return [str(ip), str(conversion), str(rd), str(growth)]


class _Year:
    """Everything the simulated year does, one method per kind of event."""

    def __init__(self, engine: Engine, city: CityConfig, plans: list[_BatchPlan], out: Path,
                 seed: int, log: YearLog) -> None:
        self.engine, self.city, self.plans, self.out, self.log = engine, city, plans, out, log
        self.rng = random.Random(f"hnte-demo-year:{seed}")
        self.plan_of = {(p.config.code, a.credit_code): a.plan for p in plans for a in p.apps}
        self.inputs = out / "inputs"

    def _stage_codes(self, batch: str, stage: Stage) -> list[tuple[str, str]]:
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(  # type: ignore[misc]
                select(Application.credit_code, Application.district_code).where(
                    Application.batch_code == batch, Application.stage == stage.value)
                .order_by(Application.id))]

    def _record(self, kind: str, path: Path, batch: str, day: date) -> None:
        from hnte.services.decisions import record_from_file

        with Session(self.engine) as session:
            report = record_from_file(session, kind, path, batch_code=batch,
                                      operator=OPERATOR, today=day)
        if report.errors:
            raise RuntimeError(f"demo decision file {path.name}: {report.errors[:3]}")
        self.log.decisions[kind] += report.applied + report.updated

    def run_flow(self, batch: str, day: date) -> None:
        from hnte.flows.batch_review import batch_review

        batch_review(batch, as_of=day)
        self.log.flow_runs += 1

    def import_batch(self, plan: _BatchPlan, day: date) -> None:
        from hnte.services.importing import import_applications

        path = synthetic.write_xlsx(self.inputs / f"{plan.config.code}-申报名单.xlsx", plan.apps)
        with Session(self.engine) as session:
            report = import_applications(session, path, batch_code=plan.config.code, today=day)
        if report.errors:
            raise RuntimeError(f"demo import: {report.errors[:3]}")
        self.log.imported += report.inserted

    def recommend(self, plan: _BatchPlan, day: date, *, late: bool) -> None:
        batch = plan.config.code
        waiting = self._stage_codes(batch, Stage.SUBMITTED) + self._stage_codes(
            batch, Stage.DISTRICT_REVIEW)
        for district in {d for _, d in waiting}:
            if (district in plan.late_districts) != late:
                continue
            rows = [
                [code, "退回", "申报材料不完整，知识产权证明缺失"]
                if self.plan_of[(batch, code)] == "returned" else [code, "推荐", ""]
                for code, d in waiting if d == district
            ]
            path = _write(self.inputs / f"{batch}-区市推荐-{district}.xlsx",
                          ["统一社会信用代码", "决定", "理由"], rows)
            self._record("recommendations", path, batch, day)

    def withdraw(self, plan: _BatchPlan, day: date) -> None:
        from hnte.services.transitions import move_one_each

        batch = plan.config.code
        with Session(self.engine) as session:
            ids = session.connection().execute(
                select(Application.id, Application.credit_code).where(
                    Application.batch_code == batch,
                    Application.stage.in_([s.value for s in (  # type: ignore[attr-defined]
                        Stage.FORMAL_CHECK, Stage.EXPERT_REVIEW)]))
            ).all()
            chosen = [(i, "企业申请撤回") for i, code in ids
                      if self.plan_of[(batch, code)] == "withdraw"]
            move_one_each(session, target=Stage.WITHDRAWN, applications=chosen,
                          actor=OPERATOR, as_of=day)
            session.commit()
        self.log.decisions["withdrawals"] += len(chosen)

    def scores(self, plan: _BatchPlan, day: date) -> None:
        batch = plan.config.code
        with self.engine.connect() as c:
            seats = c.execute(
                select(PanelSeat.expert_id, Application.credit_code)
                .join(Application, Application.id == PanelSeat.application_id)
                .where(Application.batch_code == batch,
                       Application.stage == Stage.EXPERT_REVIEW.value)
                .order_by(Application.id, PanelSeat.seat)
            ).all()
        base = {"low_score": 64, "inspection_fail": 73, "fake": 78}
        rows = []
        for expert_id, code in seats:
            plan_name = self.plan_of[(batch, code)]
            spread = 1 if plan_name == "inspection_fail" else 3
            total = base.get(plan_name, 82) + self.rng.randint(-spread, spread)
            rows.append([expert_id, code, *_sub_scores(total)])
        path = _write(self.inputs / f"{batch}-专家评分.xlsx",
                      ["专家编号", "统一社会信用代码", "知识产权", "科技成果转化能力",
                       "研究开发组织管理水平", "企业成长性"], rows)
        self._record("scores", path, batch, day)

    def inspections(self, plan: _BatchPlan, day: date) -> None:
        batch = plan.config.code
        rows = []
        for code, _ in self._stage_codes(batch, Stage.ONSITE_INSPECTION):
            plan_name = self.plan_of[(batch, code)]
            if plan_name in ("inspection_fail", "fake"):
                note = "实地勘察发现研发活动与申报材料不符" if plan_name == "inspection_fail" \
                    else "申报材料与他企雷同，知识产权权属存疑"
                rows.append([code, "不通过", note])
            else:
                rows.append([code, "通过", "现场问询、实地勘察情况属实"])
        if rows:
            path = _write(self.inputs / f"{batch}-现场考察.xlsx",
                          ["统一社会信用代码", "考察结论", "说明"], rows)
            self._record("inspections", path, batch, day)

    def approvals(self, plan: _BatchPlan, day: date) -> None:
        batch = plan.config.code
        rows = [
            [code, "不予批准", "经认定机构办公室审议，研发费用归集不规范"]
            if self.plan_of[(batch, code)] == "not_approved" else [code, "批准", ""]
            for code, _ in self._stage_codes(batch, Stage.APPROVAL)
        ]
        if rows:
            path = _write(self.inputs / f"{batch}-审批.xlsx", ["统一社会信用代码", "决定", "理由"],
                          rows)
            self._record("approvals", path, batch, day)

    def objections(self, plan: _BatchPlan, day: date, *, resolve: bool) -> None:
        batch = plan.config.code
        stage = Stage.OBJECTION_REVIEW if resolve else Stage.PUBLIC_NOTICE
        rows = []
        for code, _ in self._stage_codes(batch, stage):
            plan_name = self.plan_of[(batch, code)]
            if plan_name not in ("objection_dismissed", "objection_upheld"):
                continue
            reason = "举报该企业科技人员数与社保缴纳人数不符"
            if not resolve:
                rows.append([code, day.isoformat(), reason, "", ""])
            elif plan_name == "objection_upheld":
                rows.append([code, "", reason, "成立", "经核查举报属实"])
            else:
                rows.append([code, "", reason, "不成立", "经核查科技人员数据属实"])
        if rows:
            name = "异议处理" if resolve else "公示异议"
            headers = ["统一社会信用代码", "异议日期", "异议内容", "处理结果", "处理说明"]
            path = _write(self.inputs / f"{batch}-{name}.xlsx", headers, rows)
            self._record("objections", path, batch, day)


def _timeline(year: _Year) -> dict[date, list[tuple[str, Callable[[date], None]]]]:
    """Every batch's human steps and flow runs, by simulated day."""
    events: dict[date, list[tuple[str, Callable[[date], None]]]] = {}

    def at(day: date, label: str, action: Callable[[date], None]) -> None:
        events.setdefault(day, []).append((label, action))

    for plan in year.plans:
        b, d = plan.config.code, plan.config.deadlines
        flow = lambda day, b=b: year.run_flow(b, day)  # noqa: E731
        at(plan.config.application_deadline - timedelta(days=3), f"{b} 导入申报名单",
           lambda day, p=plan: year.import_batch(p, day))
        at(d["district_review"] - timedelta(days=4), f"{b} 区市推荐",
           lambda day, p=plan: year.recommend(p, day, late=False))
        # Two districts recommend late: the reminder job chases them with overdue notices.
        at(d["district_review"] + timedelta(days=3), f"{b} 逾期区市推荐",
           lambda day, p=plan: year.recommend(p, day, late=True))
        at(d["district_review"] + timedelta(days=4), f"{b} 审核流程", flow)
        at(d["formal_check"] - timedelta(days=2), f"{b} 企业撤回",
           lambda day, p=plan: year.withdraw(p, day))
        at(d["expert_review"] - timedelta(days=3), f"{b} 专家评分",
           lambda day, p=plan: year.scores(p, day))
        at(d["expert_review"] - timedelta(days=2), f"{b} 审核流程", flow)
        at(d["onsite_inspection"] - timedelta(days=3), f"{b} 现场考察",
           lambda day, p=plan: year.inspections(p, day))
        at(d["onsite_inspection"] - timedelta(days=2), f"{b} 审核流程", flow)
        approve = d["approval"] - timedelta(days=5)
        at(approve, f"{b} 审批", lambda day, p=plan: year.approvals(p, day))
        at(approve + timedelta(days=1), f"{b} 审核流程（公示）", flow)
        at(approve + timedelta(days=3), f"{b} 公示异议",
           lambda day, p=plan: year.objections(p, day, resolve=False))
        at(approve + timedelta(days=4), f"{b} 审核流程", flow)
        # The daily close-notices job's flow run applies the resolutions.
        at(approve + timedelta(days=7), f"{b} 异议处理",
           lambda day, p=plan: year.objections(p, day, resolve=True))
    return events


def _job_days(city: CityConfig, start: date, end: date) -> dict[date, list[str]]:
    """The days each scheduled job fires between start and end, from the city's crons."""
    from apscheduler.triggers.cron import CronTrigger

    tz = ZoneInfo(city.city.timezone)
    fires: dict[date, list[str]] = {}
    for name, cron in city.schedules.crons().items():
        if name == "outbox_dispatch":
            continue  # every minute: the demo dispatches once per simulated day instead
        trigger = CronTrigger.from_crontab(cron, timezone=tz)
        moment = datetime.combine(start, clock(0), tz) - timedelta(seconds=1)
        while True:
            moment = trigger.get_next_fire_time(None, moment + timedelta(seconds=1))
            if moment is None or moment.date() > end:
                break
            fires.setdefault(moment.date(), []).append(name)
    return fires


def run_demo(
    *,
    out: Path,
    seed: int = 2021,
    scale: float = 1.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    """Generate the city, run its year, write the reports; returns what it wrote."""
    from hnte.config.city import load_city
    from hnte.config.settings import Settings, get_settings, use_settings
    from hnte.flows import jobs
    from hnte.models.db import make_engine
    from hnte.services.experts import upsert_experts
    from hnte.services.setup import init_database

    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    database = out / "hnte.db"
    city = load_city(get_settings().city_file)
    year_number = city.city.year
    rng = random.Random(f"hnte-demo:{seed}")
    log = YearLog()

    with LocalSmtp(out / "emails") as smtp:
        previous = get_settings()
        use_settings(Settings(
            database_url=f"sqlite:///{database}", city_file=previous.city_file,
            smtp_host="127.0.0.1", smtp_port=smtp.port, operator=OPERATOR,
            smtp_sender="gaoqi@kjj.qingdao.example", review_chunk=previous.review_chunk,
        ))
        try:
            engine = make_engine(f"sqlite:///{database}")
            init_database(engine, city)
            per_district = {
                d.code: _scaled(d.stock_goal - d.net_increase, scale) for d in city.districts
            }
            stock = synthetic.starting_stock(per_district, seed=seed, year=year_number)
            _insert_stock(engine, stock, year_number, rng)
            plans = _plan_batches(city, stock, seed, scale, rng)
            pool = synthetic.experts(
                _scaled(300, max(scale, 0.2)), _scaled(80, max(scale, 0.2)), seed=seed,
                enterprise_codes=[a.credit_code for p in plans for a in p.apps][:400],
            )
            with Session(engine) as session:
                upsert_experts(session, [(e.id, e.name, e.kind, e.employer) for e in pool])
                session.commit()

            year = _Year(engine, city, plans, out, seed, log)
            events = _timeline(year)
            first = min(events) - timedelta(days=14)
            last = date(year_number, 12, 31)
            fires = _job_days(city, first, last)
            days = (last - first).days + 1
            for offset in range(days):
                day = first + timedelta(days=offset)
                for name in fires.get(day, []):
                    result = jobs.JOBS[name](day, engine=engine)
                    log.jobs[name] += 1
                    for kind, *_ in getattr(result, "notices", []):
                        log.notices[kind] += 1
                for _label, action in events.get(day, []):
                    action(day)
                report = jobs.outbox_dispatch(day, engine=engine)
                log.sent += report.sent
                if progress:
                    progress(day.isoformat(), offset + 1, days)
            report = jobs.outbox_dispatch(last, engine=engine)
            log.sent += report.sent
            files = _write_reports(engine, city, out, last)
        finally:
            use_settings(None)
    files.update({"database": database, "emails": out / "emails", "inputs": out / "inputs"})
    return DemoResult(out, database, time.perf_counter() - started, log, files, last)


def _write_reports(engine: Engine, city: CityConfig, out: Path, as_of: date) -> dict[str, Path]:
    from hnte.reports.data import gather
    from hnte.reports.html import write_html
    from hnte.reports.xlsx import write_xlsx

    year = city.city.year
    with Session(engine) as session:
        data = gather(session, year=year, as_of=as_of, city=city)
    return {
        "xlsx": write_xlsx(data, out / f"高企认定年报-{year}.xlsx"),
        "html": write_html(data, out / f"高企认定年报-{year}.html"),
    }


def year_end_counts(engine: Engine, year: int) -> dict[str, int]:
    """The numbers the demo's test checks add up (enterprises, not certificates: a renewal
    replaces a certificate, it adds none)."""
    start, end = date(year - 1, 12, 31), date(year, 12, 31)

    def valid_on(name: str) -> str:
        return (f"issued_on <= :{name} AND expires_on > :{name} "
                f"AND (revoked_on IS NULL OR revoked_on > :{name})")

    held_at_start = f"SELECT credit_code FROM certificate WHERE {valid_on('s')}"
    held_at_end = f"SELECT credit_code FROM certificate WHERE {valid_on('e')}"
    with engine.connect() as c:
        def one(sql: str) -> int:
            return int(c.execute(text(sql), {"s": start, "e": end}).scalar_one())

        return {
            "applications": one("SELECT count(*) FROM application"),
            "open": one("SELECT count(*) FROM application WHERE stage NOT IN "
                        "('certified', 'rejected', 'withdrawn')"),
            "certified": one("SELECT count(*) FROM application WHERE stage = 'certified'"),
            "certificates_issued": one("SELECT count(*) FROM certificate WHERE issued_on > :s "
                                       "AND issued_on <= :e"),
            "start_stock": one(f"SELECT count(DISTINCT credit_code) FROM certificate "
                               f"WHERE {valid_on('s')}"),
            "end_stock": one(f"SELECT count(DISTINCT credit_code) FROM certificate "
                             f"WHERE {valid_on('e')}"),
            "newly_certified": one(
                "SELECT count(DISTINCT credit_code) FROM certificate WHERE issued_on > :s "
                f"AND issued_on <= :e AND credit_code NOT IN ({held_at_start})"),
            "revoked": one(
                "SELECT count(DISTINCT credit_code) FROM certificate WHERE revoked_on > :s "
                f"AND revoked_on <= :e AND credit_code NOT IN ({held_at_end})"),
            "expired_unrenewed": one(
                f"SELECT count(DISTINCT credit_code) FROM certificate WHERE {valid_on('s')} "
                "AND expires_on <= :e AND (revoked_on IS NULL OR revoked_on > expires_on) "
                f"AND credit_code NOT IN ({held_at_end})"),
        }
