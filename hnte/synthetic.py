"""Synthetic but realistic data: the one factory shared by tests, the sample file, the demo
and the benchmarks. Same seed, same data.

Each application carries a ``plan``: what the generator intends to happen to it (pass,
fail a rule, score low, fail inspection, be withdrawn…), so the demo can write the human
decisions that make it so and tests can check the outcome.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from stdnum.cn import uscc

from hnte.models.enums import TechField

HEADERS = (
    "统一社会信用代码",
    "企业名称",
    "所属区市",
    "注册日期",
    "申报类型",
    "技术领域",
    "中介机构",
    "职工总数",
    "科技人员数",
    "近一年销售收入",
    "第二年销售收入",
    "第三年销售收入",
    "近一年研发费用",
    "第二年研发费用",
    "第三年研发费用",
    "境内研发费用",
    "高新技术产品收入",
    "I类知识产权数",
    "II类知识产权数",
    "知识产权编号",
    "重大事故",
)

FIELD_WEIGHTS = {
    TechField.ELECTRONIC_INFORMATION: 30,
    TechField.ADVANCED_MANUFACTURING: 25,
    TechField.NEW_MATERIALS: 12,
    TechField.BIO_MEDICINE: 10,
    TechField.HIGH_TECH_SERVICES: 10,
    TechField.NEW_ENERGY: 6,
    TechField.RESOURCES_ENVIRONMENT: 5,
    TechField.AEROSPACE: 2,
}
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_NAME_HEADS = "海澜瑞德华信创新宏远恒通金诺博泰中科天弘汇智联合鼎盛益康蓝谷卓越明航"
_NAME_TAILS = (
    "智能科技",
    "电子",
    "生物医药",
    "新材料",
    "自动化",
    "信息技术",
    "海洋科技",
    "精密机械",
    "环保科技",
    "能源科技",
    "软件",
    "检测技术",
)
_AGENCIES = (
    "青岛智诚知识产权代理有限公司",
    "青岛高企通咨询服务有限公司",
    "山东科创财税咨询有限公司",
    "青岛启航企业管理咨询有限公司",
    "青岛华正会计师事务所",
)

# Plans, with their share of applications. The demo turns them into decisions.
PLANS = (
    ("pass", 72),
    ("ineligible", 7),
    ("returned", 2),
    ("low_score", 9),
    ("inspection_fail", 3),
    ("withdraw", 2),
    ("objection_dismissed", 1),
    ("objection_upheld", 1),
    ("not_approved", 1),
)


@dataclass(frozen=True)
class DistrictShare:
    code: str
    name: str
    weight: float


@dataclass(frozen=True)
class SyntheticApplication:
    credit_code: str
    district_code: str
    kind: str  # "first_time" | "renewal"
    plan: str
    cells: dict[str, str]  # Chinese header → cell text, as an operator's file holds it


def credit_code(rng: random.Random, division: str) -> str:
    """A valid 18-character unified social credit code for an enterprise in ``division``."""
    body = "91" + division + "".join(rng.choice(_USCC_ALPHABET) for _ in range(9))
    return body + uscc.calc_check_digit(body)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _figures(rng: random.Random, plan: str, failing_rule: str | None) -> dict[str, int]:
    revenue = int(rng.lognormvariate(17.2, 1.0)) * 100  # fen; median ≈ 30M CNY
    revenue = max(revenue, 2_000_000_00)
    years = [revenue, int(revenue * rng.uniform(0.7, 1.0)), int(revenue * rng.uniform(0.5, 0.9))]
    tier = 5 if revenue <= 50_000_000_00 else 4 if revenue <= 200_000_000_00 else 3
    ratio = rng.uniform(tier + 0.4, tier + 4.0) / 100
    if failing_rule == "rd":
        ratio = rng.uniform(tier - 2.5, tier - 0.3) / 100
    rd = [int(y * ratio) for y in years]
    domestic_share = 1.0 if rng.random() < 0.8 else rng.uniform(0.75, 0.99)
    staff = rng.randint(25, 600)
    tech_share = rng.uniform(0.12, 0.45) if failing_rule != "staff" else rng.uniform(0.02, 0.09)
    hightech_share = (
        rng.uniform(0.65, 0.97) if failing_rule != "hightech" else rng.uniform(0.2, 0.55)
    )
    return {
        "staff_total": staff,
        "staff_tech": max(1, int(staff * tech_share)),
        "revenue_y1": years[0],
        "revenue_y2": years[1],
        "revenue_y3": years[2],
        "rd_y1": rd[0],
        "rd_y2": rd[1],
        "rd_y3": rd[2],
        "rd_domestic": int(sum(rd) * domestic_share),
        "hightech": int(years[0] * hightech_share),
    }


def applications(
    n: int,
    *,
    seed: int,
    districts: Sequence[DistrictShare],
    year: int,
    batch_sequence: int = 1,
    renewal_codes: Sequence[tuple[str, str]] = (),
    fakes: int = 0,
) -> list[SyntheticApplication]:
    """``n`` applications over ``districts`` by weight; ``renewal_codes`` (credit code,
    district code) become re-recognitions; ``fakes`` templated applications share IP
    numbers and identical figures, for screening to catch."""
    rng = random.Random(f"hnte:{seed}:{year}:{batch_sequence}")
    plans = [p for p, _ in PLANS]
    plan_weights = [w for _, w in PLANS]
    fields = list(FIELD_WEIGHTS)
    field_weights = list(FIELD_WEIGHTS.values())
    weights = [d.weight for d in districts]
    by_code = {d.code: d for d in districts}
    out: list[SyntheticApplication] = []
    seen: set[str] = set()
    template = None
    renewals = list(renewal_codes)[:n]
    for index in range(n):
        if index < len(renewals):
            code, district_code = renewals[index]
            district = by_code[district_code]
            kind = "renewal"
        else:
            district = rng.choices(districts, weights)[0]
            code = credit_code(rng, district.code)
            kind = "first_time"
        if code in seen:
            continue
        seen.add(code)
        fake = index >= n - fakes
        plan = "fake" if fake else rng.choices(plans, plan_weights)[0]
        failing = (
            rng.choice(("rd", "staff", "hightech", "young", "no_ip", "incident"))
            if plan == "ineligible"
            else None
        )
        figures = _figures(rng, plan, failing)
        if fake:
            template = template or figures
            figures = template
        registered = date(year, 1, 1) - timedelta(days=rng.randint(800, 7000))
        if failing == "young":
            registered = date(year, 3, 1) + timedelta(days=rng.randint(0, 60))
        ip1 = 0 if failing == "no_ip" else rng.choice((0, 0, 1, 1, 2, 3, 5))
        ip2 = 0 if failing == "no_ip" else rng.randint(1 if ip1 == 0 else 0, 18)
        ip_numbers = [
            f"ZL{year - rng.randint(1, 6)}{rng.randint(10**7, 10**8 - 1)}.{rng.randint(0, 9)}"
            for _ in range(min(ip1, 3))
        ]
        if fake:
            ip_numbers = [f"ZL{year - 2}10000000.{seed % 10}"]
        head = "".join(rng.choice(_NAME_HEADS) for _ in range(2))
        name = f"青岛{head}{rng.choice(_NAME_TAILS)}有限公司"
        agency = rng.choice(_AGENCIES) if rng.random() < 0.35 else ""
        if fake:
            agency = _AGENCIES[1]
        cells = {
            "统一社会信用代码": code,
            "企业名称": name,
            "所属区市": district.name,
            "注册日期": registered.isoformat(),
            "申报类型": "重新认定" if kind == "renewal" else "首次申报",
            "技术领域": rng.choices(fields, field_weights)[0].value,
            "中介机构": agency,
            "职工总数": str(figures["staff_total"]),
            "科技人员数": str(figures["staff_tech"]),
            "近一年销售收入": _yuan(figures["revenue_y1"]),
            "第二年销售收入": _yuan(figures["revenue_y2"]),
            "第三年销售收入": _yuan(figures["revenue_y3"]),
            "近一年研发费用": _yuan(figures["rd_y1"]),
            "第二年研发费用": _yuan(figures["rd_y2"]),
            "第三年研发费用": _yuan(figures["rd_y3"]),
            "境内研发费用": _yuan(figures["rd_domestic"]),
            "高新技术产品收入": _yuan(figures["hightech"]),
            "I类知识产权数": str(ip1),
            "II类知识产权数": str(ip2),
            "知识产权编号": ";".join(ip_numbers),
            "重大事故": "是" if failing == "incident" else "否",
        }
        out.append(SyntheticApplication(code, district.code, kind, plan, cells))
    return out


def rows(apps: Sequence[SyntheticApplication]) -> Iterator[list[str]]:
    yield list(HEADERS)
    for app in apps:
        yield [app.cells[h] for h in HEADERS]


def write_csv(
    path: Path, apps: Sequence[SyntheticApplication], encoding: str = "utf-8-sig"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as handle:
        csv.writer(handle).writerows(rows(apps))
    return path


def write_xlsx(path: Path, apps: Sequence[SyntheticApplication]) -> Path:
    import xlsxwriter

    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(
        str(path), {"constant_memory": True, "strings_to_numbers": False}
    )
    sheet = workbook.add_worksheet("申报名单")
    for r, values in enumerate(rows(apps)):
        sheet.write_row(r, 0, values)
    workbook.close()
    return path


@dataclass(frozen=True)
class SyntheticExpert:
    id: str
    name: str
    kind: str  # "technical" | "financial"
    employer: str


_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷"
)
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国志红云峰鹏辉"
_EMPLOYERS = (
    "中国海洋大学",
    "青岛大学",
    "青岛科技大学",
    "山东科技大学",
    "中科院青岛生物能源所",
    "青岛理工大学",
    "哈尔滨工业大学（威海）",
    "青岛农业大学",
)


def experts(
    technical: int,
    financial: int,
    *,
    seed: int,
    enterprise_codes: Sequence[str] = (),
    employed_share: float = 0.1,
) -> list[SyntheticExpert]:
    """An expert pool; ``employed_share`` of them work at one of ``enterprise_codes``
    (a conflict of interest the panel draw must respect)."""
    rng = random.Random(f"hnte-experts:{seed}")
    pool: list[SyntheticExpert] = []
    for index in range(technical + financial):
        kind = "technical" if index < technical else "financial"
        name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))
        if enterprise_codes and rng.random() < employed_share:
            employer = rng.choice(list(enterprise_codes))
        elif kind == "financial":
            employer = f"青岛{rng.choice(_NAME_HEADS)}{rng.choice(_NAME_HEADS)}会计师事务所"
        else:
            employer = rng.choice(_EMPLOYERS)
        prefix = "T" if kind == "technical" else "F"
        pool.append(SyntheticExpert(f"{prefix}{index + 1:04d}", name, kind, employer))
    return pool


def _fen(cell: str) -> int:
    # Synthetic money cells are always "<yuan>.<2 digits>" (see _yuan).
    return int(cell.replace(".", ""))


def load_applications(
    connection: Any,
    apps: Sequence[SyntheticApplication],
    *,
    batch_code: str,
    applied_on: date,
    stage: str = "submitted",
    district_decision: str | None = None,
    chunk: int = 5_000,
) -> None:
    """Insert synthetic applications (and their enterprises) straight into the database,
    for benchmarks and large tests where parsing a file is not what is being measured."""
    from sqlalchemy import insert

    from hnte.models.tables import Application, Enterprise

    for start in range(0, len(apps), chunk):
        part = apps[start : start + chunk]
        connection.execute(
            insert(Enterprise).prefix_with("OR IGNORE", dialect="sqlite"),
            [
                {
                    "credit_code": a.credit_code,
                    "name": a.cells["企业名称"],
                    "district_code": a.district_code,
                    "registered_on": date.fromisoformat(a.cells["注册日期"]),
                    "tech_field": a.cells["技术领域"],
                    "intermediary": a.cells["中介机构"] or None,
                }
                for a in part
            ],
        )
        connection.execute(
            insert(Application),
            [
                {
                    "batch_code": batch_code,
                    "credit_code": a.credit_code,
                    "district_code": a.district_code,
                    "kind": a.kind,
                    "stage": stage,
                    "version": 1,
                    "applied_on": applied_on,
                    "staff_total": int(a.cells["职工总数"]),
                    "staff_tech": int(a.cells["科技人员数"]),
                    "revenue_y1_fen": _fen(a.cells["近一年销售收入"]),
                    "revenue_y2_fen": _fen(a.cells["第二年销售收入"]),
                    "revenue_y3_fen": _fen(a.cells["第三年销售收入"]),
                    "rd_y1_fen": _fen(a.cells["近一年研发费用"]),
                    "rd_y2_fen": _fen(a.cells["第二年研发费用"]),
                    "rd_y3_fen": _fen(a.cells["第三年研发费用"]),
                    "rd_domestic_fen": _fen(a.cells["境内研发费用"]),
                    "hightech_revenue_fen": _fen(a.cells["高新技术产品收入"]),
                    "ip_class1": int(a.cells["I类知识产权数"]),
                    "ip_class2": int(a.cells["II类知识产权数"]),
                    "ip_numbers": a.cells["知识产权编号"],
                    "major_incident": a.cells["重大事故"] == "是",
                    "district_decision": district_decision,
                }
                for a in part
            ],
        )


@dataclass(frozen=True)
class StockCertificate:
    number: str
    credit_code: str
    name: str
    district_code: str
    registered_on: date
    tech_field: str
    issued_on: date
    expires_on: date


def starting_stock(
    per_district: dict[str, int], *, seed: int, year: int, province: str = "37"
) -> list[StockCertificate]:
    """The certificates valid at the end of ``year - 1``: issued over the three years
    before, so a third of them expire in ``year`` and must be renewed."""
    rng = random.Random(f"hnte-stock:{seed}:{year}")
    fields = list(FIELD_WEIGHTS)
    field_weights = list(FIELD_WEIGHTS.values())
    sequence: dict[int, int] = {}
    out: list[StockCertificate] = []
    for district_code, count in per_district.items():
        for _ in range(count):
            issue_year = rng.choices((year - 3, year - 2, year - 1), (30, 33, 37))[0]
            issued = date(issue_year, 10, 1) + timedelta(days=rng.randint(0, 80))
            sequence[issue_year] = sequence.get(issue_year, 0) + 1
            head = "".join(rng.choice(_NAME_HEADS) for _ in range(2))
            out.append(
                StockCertificate(
                    number=f"GR{issue_year}{province}{sequence[issue_year]:05d}",
                    credit_code=credit_code(rng, district_code),
                    name=f"青岛{head}{rng.choice(_NAME_TAILS)}股份有限公司",
                    district_code=district_code,
                    registered_on=issued - timedelta(days=rng.randint(900, 6000)),
                    tech_field=rng.choices(fields, field_weights)[0].value,
                    issued_on=issued,
                    expires_on=issued.replace(year=issued.year + 3),
                )
            )
    return out
