"""``hnte targets --json`` writes the still-to-renew lines from a template: the same text
as ``json.dumps(indent=2)`` of the whole document, whatever the names hold."""

from __future__ import annotations

import json
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from hnte.flows.cli_targets import _as_json, _json_text
from hnte.models.target_queries import RenewalDue
from hnte.models.targets import CityFigures, DistrictFigures, RateTable

AS_OF = date(2021, 6, 30)


def district(code: str, name: str, net: int) -> DistrictFigures:
    return DistrictFigures(
        code=code,
        name=name,
        stock=400 + net,
        start_stock=400,
        net_increase=net,
        new_recognitions=10,
        re_recognitions=2,
        expiring_unrenewed=3,
        pipeline={"submitted": 4, "approval": 1},
        projection=401.25,
        target_net=25,
        target_stock=425,
    )


CITY = CityFigures.aggregate(
    [
        district("370202", "市南区", 5),
        district("370203", "市北区", 9),
        district("370281", "胶州市", 0),
    ],
    year=2021,
    as_of=AS_OF,
    rates=RateTable(
        rates={"submitted": 0.9}, observed={"submitted": 40}, from_history={"submitted": True}
    ),
)


def reference(due: dict[str, list[RenewalDue]]) -> str:
    """What ``print_json(_as_json(...))`` writes, less its newline."""
    return json.dumps(_as_json(CITY, due, 10.0), ensure_ascii=False, indent=2, default=str)


def line(code: str, n: int, name: str) -> RenewalDue:
    number = f"GR20183700{n:03d}"
    return RenewalDue(code, f"91370200{n:010d}", name, number, date(2021, 9, n % 28 + 1))


def test_the_template_writes_what_json_writes() -> None:
    due = {
        "370202": [line("370202", 1, "甲科技有限公司"), line("370202", 2, "")],
        "370203": [line("370203", 3, 'A "quoted" \\ name\n\t\x00 ☃ 𝄞')],
    }  # 胶州市: none
    assert _json_text(CITY, due, 10.0) == reference(due)


def test_a_name_that_looks_like_the_placeholder_stays_a_name() -> None:
    due = {"370202": [line("370202", 1, '"still_to_renew": []')]}
    text = _json_text(CITY, due, 10.0)
    assert text == reference(due)
    assert json.loads(text)["districts"][1]["still_to_renew"][0]["name"] == '"still_to_renew": []'


def test_no_list_at_all() -> None:
    assert _json_text(CITY, {}, 10.0) == reference({})


@given(st.lists(st.text(), max_size=5))
def test_any_names(names: list[str]) -> None:
    due = {"370281": [line("370281", n, name) for n, name in enumerate(names)]}
    assert _json_text(CITY, due, 10.0) == reference(due)
