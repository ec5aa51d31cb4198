from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import re
from collections.abc import Callable
from datetime import date, datetime
from html.parser import HTMLParser

import jinja2
import pytest

from hnte.models.stages import Stage
from hnte.notifications.contexts import (
    LIST_LIMIT,
    BatchResults,
    BehindTarget,
    CertifiedEnterprise,
    ChangeCount,
    CitySummary,
    DeadlineReminder,
    DistrictStanding,
    EnterpriseLine,
    ExpiringCertificate,
    OverdueNotice,
    Progress,
    ProgressBar,
    ReasonCount,
    StageCount,
    WeeklyDigest,
)
from hnte.notifications.render import (
    KINDS,
    TEMPLATES_DIR,
    Rendered,
    build_message,
    make_message_id,
    render,
)

AS_OF = date(2021, 6, 1)
EVIL = "<script>alert(1)</script>青岛某某科技有限公司"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;青岛某某科技有限公司"


# --- factories -----------------------------------------------------------------------


def _header(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {"city_name": "青岛市", "year": 2021, "as_of": AS_OF}
    values.update(overrides)
    return values


def _district(**overrides: object) -> dict[str, object]:
    return _header(district_name="市南区", district_code="370202", **overrides)


def make_progress(**overrides: object) -> Progress:
    values: dict[str, object] = {
        "net_increase_target": 50,
        "stock_goal": 420,
        "current_stock": 401,
        "net_increase": 31,
        "projected_net_increase": 42,
        "year_elapsed_percent": 41.6,
        "behind": True,
        "late": False,
    }
    values.update(overrides)
    return Progress(**values)  # type: ignore[arg-type]


def _lines(n: int, name: str = "青岛海川智能科技有限公司") -> tuple[EnterpriseLine, ...]:
    return tuple(EnterpriseLine(f"91370202MA3C{i:06d}", f"{name}{i}") for i in range(n))


def make_deadline_reminder(**overrides: object) -> DeadlineReminder:
    values = _district(
        batch_title="2021年第一批高新技术企业认定",
        stage=Stage.DISTRICT_REVIEW,
        deadline=date(2021, 6, 10),
        working_days_left=7,
        waiting_total=3,
        waiting=_lines(3),
    )
    values.update(overrides)
    return DeadlineReminder(**values)  # type: ignore[arg-type]


def make_overdue_notice(**overrides: object) -> OverdueNotice:
    values = _district(
        batch_title="2021年第一批高新技术企业认定",
        stage=Stage.EXPERT_REVIEW,
        deadline=date(2021, 5, 20),
        working_days_overdue=4,
        waiting_total=2,
        waiting=_lines(2),
    )
    values.update(overrides)
    return OverdueNotice(**values)  # type: ignore[arg-type]


def make_behind_target(**overrides: object) -> BehindTarget:
    values = _district(
        progress=make_progress(),
        expiring_total=2,
        expiring=(
            ExpiringCertificate("91370202MA3C100001", "青岛蓝海新材料有限公司", date(2021, 11, 3)),
            ExpiringCertificate("91370202MA3C100002", "青岛瑞康生物医药公司", date(2021, 12, 9)),
        ),
    )
    values.update(overrides)
    return BehindTarget(**values)  # type: ignore[arg-type]


def make_weekly_digest(**overrides: object) -> WeeklyDigest:
    values = _district(
        week_start=date(2021, 5, 26),
        progress=make_progress(),
        pipeline=(
            StageCount(Stage.DISTRICT_REVIEW, 5),
            StageCount(Stage.FORMAL_CHECK, 3),
            StageCount(Stage.EXPERT_REVIEW, 12),
        ),
        changes=(
            ChangeCount(Stage.DISTRICT_REVIEW, Stage.FORMAL_CHECK, 7),
            ChangeCount(Stage.FORMAL_CHECK, Stage.REJECTED, 2),
        ),
    )
    values.update(overrides)
    return WeeklyDigest(**values)  # type: ignore[arg-type]


def make_batch_results(**overrides: object) -> BatchResults:
    values = _district(
        batch_title="2021年第一批高新技术企业认定",
        certified_count=20,
        rejected_count=4,
        in_progress_count=1,
        top_rejection_reasons=(
            ReasonCount("研发费用占比不足", 3),
            ReasonCount("科技人员占比不足10%", 1),
        ),
        certified=(
            CertifiedEnterprise("91370202MA3C200001", "青岛海川智能科技有限公司", "GR202137000001"),
        ),
    )
    values.update(overrides)
    return BatchResults(**values)  # type: ignore[arg-type]


def make_city_summary(**overrides: object) -> CitySummary:
    values = _header(
        progress=make_progress(
            net_increase_target=300, stock_goal=4600, current_stock=4450, net_increase=150,
            projected_net_increase=320, behind=False,
        ),
        districts=(
            DistrictStanding("市南区", "370202", make_progress()),
            DistrictStanding(
                "崂山区", "370212",
                make_progress(net_increase_target=55, net_increase=60, projected_net_increase=70,
                              stock_goal=900, current_stock=880, behind=False),
            ),
            DistrictStanding(
                "市北区", "370203",
                make_progress(net_increase_target=30, net_increase=6, projected_net_increase=20,
                              stock_goal=480, current_stock=450, late=True),
            ),
        ),
    )
    values.update(overrides)
    return CitySummary(**values)  # type: ignore[arg-type]


FACTORIES = {
    "deadline_reminder": make_deadline_reminder,
    "overdue_notice": make_overdue_notice,
    "behind_target": make_behind_target,
    "weekly_digest": make_weekly_digest,
    "batch_results": make_batch_results,
    "city_summary": make_city_summary,
}
DISTRICT_KINDS = [kind for kind in FACTORIES if kind != "city_summary"]
ALL = [(kind, language) for kind in FACTORIES for language in ("zh", "en")]


class _BarCells(HTMLParser):
    """Collects the chart: for each bar-fill / bar-rest cell, its width attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.fills: list[str] = []
        self.rests: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "td" and "bar-fill" in classes:
            self.fills.append(found.get("width") or "")
        if tag == "td" and "bar-rest" in classes:
            self.rests.append(found.get("width") or "")


def _bars(html: str) -> _BarCells:
    parser = _BarCells()
    parser.feed(html)
    return parser


# --- rendering -----------------------------------------------------------------------


def test_routing_table_covers_the_six_kinds_with_their_context_classes() -> None:
    assert set(KINDS) == set(FACTORIES)
    for kind, factory in FACTORIES.items():
        assert isinstance(factory(), KINDS[kind][1])


@pytest.mark.parametrize(("kind", "language"), ALL)
def test_every_template_exists_in_both_parts(kind: str, language: str) -> None:
    base = KINDS[kind][0]
    assert (TEMPLATES_DIR / f"{base}.{language}.html").is_file()
    assert (TEMPLATES_DIR / f"{base}.{language}.txt").is_file()


@pytest.mark.parametrize(("kind", "language"), ALL)
def test_every_kind_renders_a_subject_text_and_html(kind: str, language: str) -> None:
    rendered = render(kind, FACTORIES[kind](), language)
    assert rendered.kind == kind
    assert rendered.subject.strip() and "\n" not in rendered.subject
    assert rendered.subject in rendered.text
    assert "青岛市" in rendered.text and "青岛市" in rendered.html  # the sign-off
    assert "None" not in rendered.text


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("kind", DISTRICT_KINDS)
def test_district_subjects_name_the_district(kind: str, language: str) -> None:
    assert "市南区" in render(kind, FACTORIES[kind](), language).subject


def test_chinese_is_the_default_language() -> None:
    rendered = render("deadline_reminder", make_deadline_reminder())
    assert rendered.subject.startswith("关于")
    assert "高企认定工作组" in rendered.text


def test_the_city_summary_names_the_city_and_ranks_every_district() -> None:
    rendered = render("city_summary", make_city_summary())
    assert "青岛市" in rendered.subject
    for name in ("市南区", "崂山区", "市北区"):
        assert name in rendered.html and name in rendered.text


@pytest.mark.parametrize(("kind", "language"), ALL)
def test_html_styles_are_inlined_and_no_style_block_is_left(kind: str, language: str) -> None:
    html = render(kind, FACTORIES[kind](), language).html
    assert "<style" not in html
    assert 'style="' in html
    for forbidden in ("<script", "<img", "<link", "@font-face", "http://", "https://"):
        assert forbidden not in html


def test_chart_bars_are_as_wide_as_their_percent() -> None:
    # net 31/50, projected 42/50, stock 401/420, year elapsed 41.6%
    cells = _bars(render("behind_target", make_behind_target()).html)
    assert cells.fills == ["62%", "84%", "95%", "41%"]
    assert cells.rests == ["38%", "16%", "5%", "59%"]


def test_a_bar_over_target_fills_its_track_and_still_prints_the_true_percent() -> None:
    rendered = render("city_summary", make_city_summary(), "en")
    cells = _bars(rendered.html)
    # city: 150/300, 320/300, 4450/4600, 41.6; then districts by rank: 60/55, 31/50, 6/30
    assert cells.fills == ["50%", "100%", "96%", "41%", "100%", "62%", "20%"]
    assert len(cells.rests) == len(cells.fills) - 2  # a full bar has no remainder cell
    assert "109%" in rendered.html and "106.6%" in rendered.html


def test_text_part_has_the_numbers_and_a_text_bar() -> None:
    text = render("behind_target", make_behind_target()).text
    numbers = ("31 家", "50 家", "62%", "19 家", "42 家", "预计缺口 8 家", "41.6%", "401 / 420")
    for number in numbers:
        assert number in text
    assert "████████████░░░░░░░░ 62%" in text
    assert "91370202MA3C100001" in text and "2021年11月3日" in text


def test_english_text_part_has_the_same_numbers() -> None:
    text = render("behind_target", make_behind_target(), "en").text
    numbers = ("31", "62% of target", "Still to go: 19", "projected shortfall 8", "3 November 2021")
    for number in numbers:
        assert number in text
    assert "████████████░░░░░░░░ 62%  Net increase 31/50" in text


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        (
            "deadline_reminder",
            lambda: make_deadline_reminder(waiting=_lines(1, EVIL), waiting_total=1),
        ),
        (
            "overdue_notice",
            lambda: make_overdue_notice(waiting=_lines(1, EVIL), waiting_total=1),
        ),
        (
            "behind_target",
            lambda: make_behind_target(
                expiring=(ExpiringCertificate("91370202MA3C100001", EVIL, date(2021, 11, 3)),),
                expiring_total=1,
            ),
        ),
        (
            "batch_results",
            lambda: make_batch_results(
                certified=(CertifiedEnterprise("91370202MA3C200001", EVIL, "GR202137000001"),),
                top_rejection_reasons=(ReasonCount(EVIL, 1),),
            ),
        ),
    ],
)
@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_malicious_enterprise_name_is_escaped_in_html(
    kind: str, context: Callable[[], object], language: str
) -> None:
    rendered = render(kind, context(), language)
    assert ESCAPED in rendered.html
    assert "<script" not in rendered.html
    assert EVIL in rendered.text  # the text part is not HTML, so it is not escaped


def test_a_malicious_district_name_is_escaped_in_the_title_and_heading() -> None:
    rendered = render("weekly_digest", make_weekly_digest(district_name="<b>市南区</b>"))
    assert "<b>" not in rendered.html
    assert rendered.html.count("&lt;b&gt;市南区&lt;/b&gt;") >= 3  # title, heading, salutation
    assert "<b>市南区</b>" in rendered.subject


def test_a_missing_context_value_raises_instead_of_rendering_blank() -> None:
    context = make_deadline_reminder()
    object.__delattr__(context, "batch_title")  # as a context built by hand might lack it
    with pytest.raises(jinja2.UndefinedError):
        render("deadline_reminder", context)


def test_a_none_value_raises_instead_of_printing_none() -> None:
    with pytest.raises(ValueError, match="None"):
        render("deadline_reminder", make_deadline_reminder(batch_title=None))


def test_a_context_of_another_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="DeadlineReminder"):
        render("deadline_reminder", make_overdue_notice())


@pytest.mark.parametrize(
    ("kind", "language"), [("no_such_kind", "zh"), ("deadline_reminder", "fr")]
)
def test_an_unknown_kind_or_language_is_refused(kind: str, language: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        render(kind, make_deadline_reminder(), language)


def test_a_long_list_is_cut_at_the_limit_and_says_how_many_more() -> None:
    context = make_deadline_reminder(waiting=_lines(LIST_LIMIT), waiting_total=60)
    rendered = render("deadline_reminder", context)
    assert "另有 10 家未列出" in rendered.text and "另有 10 家未列出" in rendered.html
    assert rendered.html.count('class="code"') == LIST_LIMIT


def test_a_reminder_on_the_deadline_day_says_it_is_today() -> None:
    rendered = render("deadline_reminder", make_deadline_reminder(working_days_left=0))
    assert "今日即为截止日" in rendered.text


def test_the_digest_labels_stages_and_changes_from_the_stage_table() -> None:
    zh = render("weekly_digest", make_weekly_digest()).text
    assert zh.index("区市推荐：5 家") < zh.index("形式审查：3 家") < zh.index("专家评审：12 家")
    assert "合计：20 家" in zh
    assert "形式审查不通过：2 家" in zh
    en = render("weekly_digest", make_weekly_digest(changes=()), "en").text
    assert "Formal check: 3" in en and "No changes this week." in en


# --- contexts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "target", "percent_text", "width", "text_bar"),
    [
        (31, 50, "62%", 62, "████████████░░░░░░░░ 62%"),
        (1, 3, "33.3%", 33, "██████░░░░░░░░░░░░░░ 33.3%"),
        (60, 55, "109%", 100, "████████████████████ 109%"),
        (-3, 20, "-15%", 0, "░░░░░░░░░░░░░░░░░░░░ -15%"),
        (1999, 2000, "99.9%", 99, "███████████████████░ 99.9%"),
        (0, 0, "100%", 100, "████████████████████ 100%"),  # a zero target is met
        (-1, 0, "0%", 0, "░░░░░░░░░░░░░░░░░░░░ 0%"),
    ],
)
def test_progress_bar_caps_its_width_but_not_its_percent(
    value: int, target: int, percent_text: str, width: int, text_bar: str
) -> None:
    bar = ProgressBar("净增", value, target)
    assert bar.percent_text == percent_text
    assert bar.width == width
    assert bar.text_bar() == text_bar


def test_a_percent_just_short_of_done_never_reads_as_done() -> None:
    bar = ProgressBar("净增", 9996, 10000)
    assert bar.percent_text == "99.9%" and bar.width == 99


def test_progress_derives_gaps_that_never_go_negative() -> None:
    progress = make_progress(net_increase=60, projected_net_increase=70)
    assert progress.gap == 0 and progress.projected_gap == 0
    assert make_progress().gap == 19 and make_progress().projected_gap == 8


def test_ranking_orders_districts_by_completion_and_shares_ties() -> None:
    same = make_progress(net_increase=25)  # 50%
    summary = make_city_summary(
        districts=(
            DistrictStanding("李沧区", "370213", make_progress(net_increase=10)),
            DistrictStanding("市北区", "370203", same),
            DistrictStanding("市南区", "370202", same),
            DistrictStanding("崂山区", "370212", make_progress(net_increase=55)),
        )
    )
    assert [(r.rank, r.district_name) for r in summary.ranking] == [
        (1, "崂山区"), (2, "市南区"), (2, "市北区"), (4, "李沧区"),
    ]


def test_a_list_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 50"):
        make_deadline_reminder(waiting=_lines(LIST_LIMIT + 1), waiting_total=100)


def test_a_total_below_the_lines_listed_is_refused() -> None:
    with pytest.raises(ValueError, match="total"):
        make_behind_target(expiring_total=1)


def test_contexts_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_batch_results().certified_count = 0  # type: ignore[misc]


# --- messages --------------------------------------------------------------------------


def _message(**overrides: object):
    values: dict[str, object] = {
        "sender": "青岛市科学技术局 <gaoqi@kjj.qingdao.example>",
        "to": ["kjj-shinan@qingdao.example"],
        "cc": ["gaoqi@kjj.qingdao.example"],
        "message_id": make_message_id("overdue_notice|370202|2021-1", "kjj.qingdao.example"),
        "date": datetime(2021, 6, 1, 9, 0),
    }
    values.update(overrides)
    rendered = values.pop("rendered", None) or render("overdue_notice", make_overdue_notice())
    return rendered, build_message(rendered, **values)  # type: ignore[arg-type]


def test_build_message_is_multipart_alternative_with_a_text_and_an_html_part() -> None:
    rendered, message = _message()
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in message.iter_parts())


def test_a_message_round_trips_through_bytes_with_its_utf8_subject_and_bodies() -> None:
    rendered, message = _message()
    raw = message.as_bytes()
    assert raw.isascii()  # headers are encoded, bodies transfer-encoded
    assert b"\r\n" in raw  # policy.SMTP line endings
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == rendered.subject
    # on the wire every line ends in CRLF, the bodies included
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == rendered.text
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == rendered.html
    assert parsed["To"].addresses[0].addr_spec == "kjj-shinan@qingdao.example"
    assert parsed["Cc"].addresses[0].addr_spec == "gaoqi@kjj.qingdao.example"
    assert parsed["From"].addresses[0].display_name == "青岛市科学技术局"
    assert parsed["Message-ID"] == message["Message-ID"]


def test_a_naive_date_is_read_as_shanghai_time() -> None:
    _, message = _message(date=datetime(2021, 6, 1, 9, 0))
    assert message["Date"].endswith("+0800")


def test_no_cc_header_without_cc() -> None:
    _, message = _message(cc=())
    assert message["Cc"] is None


INJECTIONS = [
    {"rendered": Rendered("overdue_notice", "逾期通知\r\nBcc: x@evil.example", "t", "<p>h</p>")},
    {"rendered": Rendered("overdue_notice", "逾期通知\nBcc: x@evil.example", "t", "<p>h</p>")},
    {"rendered": Rendered("overdue_notice", "逾期通知\x00", "t", "<p>h</p>")},
    {"to": ["kjj-shinan@qingdao.example\r\nBcc: x@evil.example"]},
    {"cc": ["gaoqi@kjj.qingdao.example\r\nBcc: x@evil.example"]},
    {"sender": "gaoqi@kjj.qingdao.example\r\nBcc: x@evil.example"},
    {"sender": "青岛市\r\nBcc: x@evil.example <gaoqi@kjj.qingdao.example>"},
    {"message_id": "<abc@kjj.qingdao.example>\r\nBcc: x@evil.example"},
]


@pytest.mark.parametrize("overrides", INJECTIONS)
def test_header_injection_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _message(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"to": []},
        {"to": ["not an address"]},
        {"to": ["a@x.example, b@y.example"]},
        {"cc": ["a@x.example; b@y.example"]},
        {"message_id": "no-angle-brackets@kjj.qingdao.example"},
        {"rendered": Rendered("overdue_notice", "  ", "t", "<p>h</p>")},
    ],
)
def test_malformed_recipients_ids_and_subjects_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _message(**overrides)


def test_one_string_in_place_of_a_list_of_recipients_is_refused() -> None:
    with pytest.raises(TypeError):
        _message(to="kjj-shinan@qingdao.example")


def test_make_message_id_is_deterministic() -> None:
    key = "behind_target|370202|2021-W22"
    first = make_message_id(key, "kjj.qingdao.example")
    assert first == make_message_id(key, "kjj.qingdao.example")
    assert first != make_message_id(key + "x", "kjj.qingdao.example")
    assert re.fullmatch(r"<[0-9a-f]{32}@kjj\.qingdao\.example>", first)
    assert first == f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@kjj.qingdao.example>"


@pytest.mark.parametrize("domain", ["", "kjj.example\r\nBcc: x@evil", "a b.example", "x@y"])
def test_make_message_id_refuses_a_bad_domain(domain: str) -> None:
    with pytest.raises(ValueError):
        make_message_id("k", domain)

