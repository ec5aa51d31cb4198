from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hnte.models.screening import (
    FLAG_CODES,
    Flag,
    ScreeningInput,
    ScreeningPolicy,
    describe,
    flag_codes,
    screen,
)

CNY = 100  # fen


def _app(app_id: int, **changes: Any) -> ScreeningInput:
    """A clean application: every ratio comfortably above its threshold, nothing shared."""
    clean = ScreeningInput(
        application_id=app_id,
        credit_code=f"91370200MA{app_id:08d}",
        ip_numbers=(f"ZL2020{app_id:08d}.X",),
        intermediary=None,
        staff_total=100,
        staff_tech=30,  # 30 %
        # Varying the latest revenue by id keeps every clean application's figures unique.
        revenue_fen=(40_000_000 * CNY + app_id, 39_000_000 * CNY, 38_000_000 * CNY),
        rd_fen=(3_200_000 * CNY,) * 3,  # about 8 % of revenue
        rd_domestic_fen=8_640_000 * CNY,  # 90 % of R&D
        hightech_revenue_fen=32_000_000 * CNY,  # about 80 % of the latest revenue
    )
    return replace(clean, **changes)


def _codes(result: dict[int, list[Flag]]) -> dict[int, str]:
    return {app_id: flag_codes(flags) for app_id, flags in result.items()}


def _agency(name: str, first_id: int, count: int) -> list[ScreeningInput]:
    return [_app(first_id + i, intermediary=name) for i in range(count)]


SAME_FIGURES: dict[str, Any] = {
    "staff_total": 50,
    "staff_tech": 20,
    "revenue_fen": (10_000_000 * CNY,),
    "rd_fen": (900_000 * CNY,),
    "rd_domestic_fen": 800_000 * CNY,
    "hightech_revenue_fen": 8_000_000 * CNY,
}

# Shares an IP and figures, sits on the 10 % staff threshold and uses one agency.
EVERYTHING: dict[str, Any] = {
    **SAME_FIGURES,
    "staff_total": 250,
    "staff_tech": 25,
    "ip_numbers": ("ZL9",),
    "intermediary": "甲",
}

# (sentence, batch, keyword arguments to screen, expected {application id: stored codes})
CASES: list[tuple[str, list[ScreeningInput], dict[str, Any], dict[int, str]]] = [
    ("a clean batch yields no flags", [_app(1), _app(2), _app(3)], {}, {}),
    ("an empty batch yields no flags", [], {}, {}),
    # DUPLICATE_CREDIT_CODE
    (
        "the same credit code twice in the batch flags both applications",
        [_app(1), _app(2, credit_code=_app(1).credit_code), _app(3)],
        {},
        {1: "DUPLICATE_CREDIT_CODE", 2: "DUPLICATE_CREDIT_CODE"},
    ),
    (
        "credit codes differing only in case and spaces are the same code",
        [_app(1, credit_code="91370200ma00000001"), _app(2, credit_code=" 91370200MA00000001 ")],
        {},
        {1: "DUPLICATE_CREDIT_CODE", 2: "DUPLICATE_CREDIT_CODE"},
    ),
    (
        "a credit code open in another batch of the year flags the application",
        [_app(1), _app(2)],
        {"other_open_credit_codes": {"91370200ma00000002 "}},
        {2: "DUPLICATE_CREDIT_CODE"},
    ),
    (
        "credit codes open elsewhere but absent from the batch flag nothing",
        [_app(1)],
        {"other_open_credit_codes": ["91370200MA99999999"]},
        {},
    ),
    # SHARED_IP
    (
        "an IP number claimed by two enterprises flags both claimants",
        [_app(1, ip_numbers=("ZL202010000001.X",)), _app(2, ip_numbers=("ZL202010000001.X",))],
        {},
        {1: "SHARED_IP", 2: "SHARED_IP"},
    ),
    (
        "IP numbers differing only in case and spaces are the same number",
        [
            _app(1, ip_numbers=("ZL202010000001.X",)),
            _app(2, ip_numbers=("  zl202010000001.x ",)),
            _app(3, ip_numbers=("ZL 2020 10000001.X",)),
        ],
        {},
        {1: "SHARED_IP", 2: "SHARED_IP", 3: "SHARED_IP"},
    ),
    (
        "empty IP numbers are dropped rather than shared",
        [_app(1, ip_numbers=("", " ")), _app(2, ip_numbers=("  ",))],
        {},
        {},
    ),
    (
        "one enterprise filing twice with its own IP is a duplicate, not a shared IP",
        [_app(1), _app(2, credit_code=_app(1).credit_code, ip_numbers=_app(1).ip_numbers)],
        {},
        {1: "DUPLICATE_CREDIT_CODE", 2: "DUPLICATE_CREDIT_CODE"},
    ),
    (
        "an enterprise listing its own IP number twice does not share it",
        [_app(1, ip_numbers=("ZL1", "zl1"))],
        {},
        {},
    ),
    # IDENTICAL_FIGURES
    (
        "identical staff and financial figures across two enterprises flag both",
        [_app(1, **SAME_FIGURES), _app(2, **SAME_FIGURES), _app(3)],
        {},
        {1: "IDENTICAL_FIGURES", 2: "IDENTICAL_FIGURES"},
    ),
    (
        "figures one fen apart are not identical",
        [
            _app(1, **SAME_FIGURES),
            _app(2, **{**SAME_FIGURES, "rd_domestic_fen": SAME_FIGURES["rd_domestic_fen"] + 1}),
        ],
        {},
        {},
    ),
    (
        "the same revenue in a different year order is not identical",
        [
            _app(1, **{**SAME_FIGURES, "revenue_fen": (1 * CNY, 2 * CNY)}),
            _app(2, **{**SAME_FIGURES, "revenue_fen": (2 * CNY, 1 * CNY)}),
        ],
        {},
        {},
    ),
    # ON_THRESHOLD
    (
        "R&D exactly 5 % at revenue up to 50M CNY is on threshold",
        [
            _app(
                1,
                revenue_fen=(50_000_000 * CNY,),
                rd_fen=(2_500_000 * CNY,),
                rd_domestic_fen=2_000_000 * CNY,
                hightech_revenue_fen=40_000_000 * CNY,
            )
        ],
        {},
        {1: "ON_THRESHOLD"},
    ),
    (
        "R&D exactly 4 % at revenue between 50M and 200M CNY is on threshold",
        [
            _app(
                1,
                revenue_fen=(100_000_000 * CNY,),
                rd_fen=(4_000_000 * CNY,),
                rd_domestic_fen=3_000_000 * CNY,
                hightech_revenue_fen=80_000_000 * CNY,
            )
        ],
        {},
        {1: "ON_THRESHOLD"},
    ),
    (
        "R&D exactly 3 % at revenue above 200M CNY is on threshold",
        [
            _app(
                1,
                revenue_fen=(300_000_000 * CNY,),
                rd_fen=(9_000_000 * CNY,),
                rd_domestic_fen=8_000_000 * CNY,
                hightech_revenue_fen=240_000_000 * CNY,
            )
        ],
        {},
        {1: "ON_THRESHOLD"},
    ),
    (
        "R&D of 4 % at exactly 50M CNY revenue is under the 5 % tier, not on a threshold",
        [
            _app(
                1,
                revenue_fen=(50_000_000 * CNY,),
                rd_fen=(2_000_000 * CNY,),
                rd_domestic_fen=1_800_000 * CNY,
                hightech_revenue_fen=40_000_000 * CNY,
            )
        ],
        {},
        {},
    ),
    (
        "the R&D ratio is taken over all years while the tier follows the latest year",
        [
            _app(
                1,
                revenue_fen=(60_000_000 * CNY, 40_000_000 * CNY),
                rd_fen=(2_000_000 * CNY, 2_000_000 * CNY),
                rd_domestic_fen=3_000_000 * CNY,
                hightech_revenue_fen=50_000_000 * CNY,
            )
        ],
        {},
        {1: "ON_THRESHOLD"},
    ),
    (
        "domestic R&D exactly 60 % is on threshold",
        [_app(1, rd_domestic_fen=5_760_000 * CNY)],
        {},
        {1: "ON_THRESHOLD"},
    ),
    (
        "S&T staff exactly 10 % is on threshold",
        [_app(1, staff_total=250, staff_tech=25)],
        {},
        {1: "ON_THRESHOLD"},
    ),
    (
        "high-tech revenue exactly 60 % of the latest year is on threshold",
        [_app(1, revenue_fen=(40_000_000 * CNY, 1 * CNY), hightech_revenue_fen=24_000_000 * CNY)],
        {},
        {1: "ON_THRESHOLD"},
    ),
    (
        "one fen above a threshold is not on it without a margin",
        [_app(1, rd_domestic_fen=5_760_000 * CNY + 1)],
        {},
        {},
    ),
    (
        "ratios below a threshold are left to eligibility",
        [_app(1, staff_total=250, staff_tech=24, rd_domestic_fen=1 * CNY)],
        {},
        {},
    ),
    (
        "zero staff and no revenue neither crash nor flag",
        [_app(1, staff_total=0, staff_tech=0, revenue_fen=(), rd_fen=(), rd_domestic_fen=0)],
        {},
        {},
    ),
    # INTERMEDIARY
    (
        "an agency with 20 applicants and a 50 % pass rate flags all its applicants",
        _agency("某某咨询", 1, 20) + [_app(99)],
        {"intermediary_pass_rates": {"某某咨询": (10, 20)}},
        {i: "INTERMEDIARY" for i in range(1, 21)},
    ),
    (
        "an agency with 19 applicants is below the volume bar",
        _agency("某某咨询", 1, 19),
        {"intermediary_pass_rates": {"某某咨询": (10, 20)}},
        {},
    ),
    (
        "an agency whose pass rate is exactly 60 % is not below the maximum",
        _agency("某某咨询", 1, 20),
        {"intermediary_pass_rates": {"某某咨询": (12, 20)}},
        {},
    ),
    (
        "an agency with no history and 39 applicants is not flagged",
        _agency("某某咨询", 1, 39),
        {},
        {},
    ),
    (
        "an agency with no history and 40 applicants flags all of them",
        _agency("某某咨询", 1, 40),
        {"intermediary_pass_rates": {"别的咨询": (0, 10)}},
        {i: "INTERMEDIARY" for i in range(1, 41)},
    ),
    (
        "an agency with no decided applications counts as having no history",
        _agency("某某咨询", 1, 20),
        {"intermediary_pass_rates": {"某某咨询": (0, 0)}},
        {},
    ),
    (
        "agency names differing only in surrounding and full-width spaces are one agency",
        _agency("某某咨询", 1, 10) + _agency(" 某某咨询\u3000", 11, 10),
        {"intermediary_pass_rates": {"某某咨询 ": (1, 10)}},
        {i: "INTERMEDIARY" for i in range(1, 21)},
    ),
    (
        "an enterprise filing twice through an agency counts as one applicant",
        _agency("某某咨询", 1, 19)
        + [_app(20, intermediary="某某咨询", credit_code=_app(1).credit_code)],
        {"intermediary_pass_rates": {"某某咨询": (1, 10)}},
        {1: "DUPLICATE_CREDIT_CODE", 20: "DUPLICATE_CREDIT_CODE"},
    ),
    (
        "the volume and pass-rate bars follow the policy",
        _agency("某某咨询", 1, 3),
        {
            "intermediary_pass_rates": {"某某咨询": (7, 10)},
            "policy": ScreeningPolicy(
                intermediary_min_applicants=3, intermediary_max_pass_rate_percent=80
            ),
        },
        {1: "INTERMEDIARY", 2: "INTERMEDIARY", 3: "INTERMEDIARY"},
    ),
    # Several flags on one application
    (
        "several flags on one application come in FLAG_CODES order",
        [
            _app(1, **EVERYTHING),
            _app(2, **EVERYTHING, credit_code=_app(1).credit_code),
            _app(3, **EVERYTHING),
        ],
        {
            "intermediary_pass_rates": {"甲": (0, 5)},
            "policy": ScreeningPolicy(intermediary_min_applicants=2),
        },
        {
            1: "DUPLICATE_CREDIT_CODE,SHARED_IP,IDENTICAL_FIGURES,ON_THRESHOLD,INTERMEDIARY",
            2: "DUPLICATE_CREDIT_CODE,SHARED_IP,IDENTICAL_FIGURES,ON_THRESHOLD,INTERMEDIARY",
            3: "SHARED_IP,IDENTICAL_FIGURES,ON_THRESHOLD,INTERMEDIARY",
        },
    ),
]


@pytest.mark.parametrize(
    ("batch", "kwargs", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_screening_flags(
    batch: list[ScreeningInput], kwargs: dict[str, Any], expected: dict[int, str]
) -> None:
    assert _codes(screen(batch, **kwargs)) == expected


# (sentence, basis-point margin, domestic R&D in fen out of 9,600,000 CNY, flagged)
MARGIN_CASES = [
    ("exactly on the threshold is flagged with no margin", 0, 5_760_000 * CNY, True),
    ("0.05 points above is not flagged with no margin", 0, 5_764_800 * CNY, False),
    ("0.05 points above is flagged with a 5 basis-point margin", 5, 5_764_800 * CNY, True),
    ("one fen beyond the margin is not flagged", 5, 5_764_800 * CNY + 1, False),
    ("below the threshold is not flagged even with a margin", 5, 5_760_000 * CNY - 1, False),
]


@pytest.mark.parametrize(
    ("margin", "domestic_fen", "flagged"),
    [case[1:] for case in MARGIN_CASES],
    ids=[case[0] for case in MARGIN_CASES],
)
def test_threshold_margin(margin: int, domestic_fen: int, flagged: bool) -> None:
    policy = ScreeningPolicy(threshold_margin_basis_points=margin)
    result = screen([_app(1, rd_domestic_fen=domestic_fen)], policy=policy)
    assert (1 in result) is flagged


# (sentence, batch, kwargs, application id, expected fragment of reason_zh, of reason_en)
REASON_CASES: list[tuple[str, list[ScreeningInput], dict[str, Any], int, str, str]] = [
    (
        "a duplicate reason names the code and how often it appears",
        [_app(1), _app(2, credit_code=_app(1).credit_code)],
        {},
        1,
        "91370200MA00000001 在本批次中申报 2 次",
        "appears 2 times in this batch",
    ),
    (
        "a duplicate reason says when the code is open in another batch",
        [_app(1)],
        {"other_open_credit_codes": [_app(1).credit_code]},
        1,
        "其他批次已有在办申请",
        "open application in another batch",
    ),
    (
        "a shared IP reason names the number and the count of enterprises",
        [_app(i, ip_numbers=("zl202010000001.x",)) for i in (1, 2, 3)],
        {},
        2,
        "知识产权 ZL202010000001.X 同时被 3 家企业申报",
        "IP ZL202010000001.X is claimed by 3 enterprises",
    ),
    (
        "a shared IP reason counts further shared numbers",
        [_app(1, ip_numbers=("A", "B")), _app(2, ip_numbers=("A", "B"))],
        {},
        1,
        "知识产权 A 同时被 2 家企业申报；另有 1 项知识产权与其他企业共用",
        "1 more of its IP numbers",
    ),
    (
        "an identical figures reason names the other enterprises",
        [_app(1, **SAME_FIGURES), _app(2, **SAME_FIGURES)],
        {},
        1,
        "与另外 1 家企业完全相同（91370200MA00000002）",
        "identical to 1 other enterprises (91370200MA00000002)",
    ),
    (
        "an identical figures reason names at most three others",
        [_app(i, **SAME_FIGURES) for i in range(1, 7)],
        {},
        6,
        "与另外 5 家企业完全相同（91370200MA00000001、91370200MA00000002、91370200MA00000003 等）",
        "91370200MA00000003, ...)",
    ),
    (
        "an on-threshold reason names the ratio, its value and the threshold",
        [_app(1, staff_total=250, staff_tech=25)],
        {},
        1,
        "科技人员占职工总数比例 10.00%（门槛 10.00%）",
        "S&T staff share 10.00% (threshold 10.00%)",
    ),
    (
        "an on-threshold reason names the R&D tier threshold",
        [
            _app(
                1,
                revenue_fen=(100_000_000 * CNY,),
                rd_fen=(4_000_000 * CNY,),
                rd_domestic_fen=3_000_000 * CNY,
                hightech_revenue_fen=80_000_000 * CNY,
            )
        ],
        {},
        1,
        "研发费用占销售收入比例 4.00%（门槛 4.00%）",
        "R&D to revenue 4.00% (threshold 4.00%)",
    ),
    (
        "an intermediary reason names the agency, its applicants and its pass rate",
        _agency("某某咨询", 1, 20),
        {"intermediary_pass_rates": {"某某咨询": (1, 3)}},
        1,
        "中介机构 某某咨询 本批代理 20 家企业，历史通过率 33.33%（1/3）",
        "past pass rate 33.33% (1/3)",
    ),
    (
        "an intermediary reason says when there is no history",
        _agency("某某咨询", 1, 40),
        {},
        1,
        "中介机构 某某咨询 本批代理 40 家企业，无历史通过率",
        "no past pass rate",
    ),
]


@pytest.mark.parametrize(
    ("batch", "kwargs", "app_id", "zh", "en"),
    [case[1:] for case in REASON_CASES],
    ids=[case[0] for case in REASON_CASES],
)
def test_reasons_name_the_evidence(
    batch: list[ScreeningInput], kwargs: dict[str, Any], app_id: int, zh: str, en: str
) -> None:
    [flag] = screen(batch, **kwargs)[app_id]
    assert flag.code in FLAG_CODES
    assert zh in flag.reason_zh
    assert en in flag.reason_en


STORED_CASES = [
    ("no flags store an empty string", [], ""),
    (
        "codes are stored once each in FLAG_CODES order",
        ["INTERMEDIARY", "SHARED_IP", "INTERMEDIARY"],
        "SHARED_IP,INTERMEDIARY",
    ),
]


@pytest.mark.parametrize(
    ("codes", "stored"),
    [case[1:] for case in STORED_CASES],
    ids=[case[0] for case in STORED_CASES],
)
def test_flag_codes_are_stored_canonically(codes: list[str], stored: str) -> None:
    assert flag_codes(Flag(code, "理由", "reason") for code in codes) == stored


def test_an_unknown_flag_code_is_refused_when_stored() -> None:
    with pytest.raises(ValueError, match="NOT_A_FLAG"):
        flag_codes([Flag("NOT_A_FLAG", "理由", "reason")])


DESCRIBE_CASES = [
    ("an empty column describes nothing", "", "zh", []),
    ("codes are described in Chinese by default", "SHARED_IP", "zh", ["知识产权被多家企业申报"]),
    (
        "codes are described in English on request",
        "DUPLICATE_CREDIT_CODE,ON_THRESHOLD",
        "en",
        ["Credit code applied more than once", "Ratio sitting exactly on a threshold"],
    ),
    ("an unknown stored code is shown as stored", "OLD_CODE", "en", ["OLD_CODE"]),
]


@pytest.mark.parametrize(
    ("codes", "language", "labels"),
    [case[1:] for case in DESCRIBE_CASES],
    ids=[case[0] for case in DESCRIBE_CASES],
)
def test_describe(codes: str, language: str, labels: list[str]) -> None:
    assert describe(codes, language) == labels


def test_every_flag_code_has_a_label_in_each_language() -> None:
    all_codes = ",".join(FLAG_CODES)
    for language in ("zh", "en"):
        assert all(label not in FLAG_CODES for label in describe(all_codes, language))


def test_describe_refuses_an_unknown_language() -> None:
    with pytest.raises(ValueError, match="fr"):
        describe("SHARED_IP", "fr")


@pytest.mark.parametrize(
    "changes",
    [
        {"intermediary_min_applicants": 0},
        {"intermediary_max_pass_rate_percent": 101},
        {"threshold_margin_basis_points": -1},
    ],
    ids=["no agency volume bar", "a pass rate over 100 %", "a negative margin"],
)
def test_a_nonsensical_policy_is_refused(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ScreeningPolicy(**changes)


def test_a_repeated_application_id_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[7\]"):
        screen([_app(7), _app(7)])


def test_screening_100000_applications_finds_only_the_planted_flags() -> None:
    size = 100_000
    batch = [_app(i) for i in range(1, size + 1)]
    batch[10] = _app(11, credit_code=_app(5).credit_code)
    batch[20] = _app(21, ip_numbers=_app(30).ip_numbers)
    batch[40] = _app(41, **SAME_FIGURES)
    batch[50] = _app(51, **SAME_FIGURES)
    batch[60] = _app(61, staff_total=250, staff_tech=25)
    for i in range(1_000, 1_020):
        batch[i] = _app(i + 1, intermediary="某某咨询")

    result = screen(
        batch,
        other_open_credit_codes=[_app(size).credit_code],
        intermediary_pass_rates={"某某咨询": (1, 10)},
    )

    assert _codes(result) == {
        5: "DUPLICATE_CREDIT_CODE",
        11: "DUPLICATE_CREDIT_CODE",
        21: "SHARED_IP",
        30: "SHARED_IP",
        41: "IDENTICAL_FIGURES",
        51: "IDENTICAL_FIGURES",
        61: "ON_THRESHOLD",
        size: "DUPLICATE_CREDIT_CODE",
        **{i: "INTERMEDIARY" for i in range(1_001, 1_021)},
    }
