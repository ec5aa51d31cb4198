"""The bytes ``build_wire`` writes parse to the message ``build_mime`` builds."""

from __future__ import annotations

import email
import email.generator
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from io import BytesIO
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hnte.models.tables import OutboxMessage
from hnte.notifications.outbox import split_addresses
from hnte.notifications.smtp import Unsendable, build_mime, build_wire

TZ = ZoneInfo("Asia/Shanghai")
SENDER = "gaoqi@kjj.qingdao.example"
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
# Unicode text as templates produce it: CJK, ASCII, full-width punctuation, odd line ends.
TEXT = st.text(
    st.one_of(
        CJK,
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from(["\n", "\r", "\t", "，", "。", "“", "”", "（", "）", "€", "😀"]),
    ),
    max_size=400,
)
# Names the email package can parse at all (it fails on one such as ".").
NAME = st.text(st.one_of(CJK, st.sampled_from(list("Zhang San"))), max_size=40)
LOCAL = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789._-"), min_size=1, max_size=20)


def row(**values: object) -> OutboxMessage:
    defaults: dict[str, object] = {
        "id": 1,
        "dedupe_key": "k",
        "kind": "deadline_reminder",
        "period": "2021-06-01",
        "recipients": "区联络员 <liaison@shinan.qingdao.example>",
        "cc": "gaoqi@kjj.qingdao.example",
        "subject": "关于2021年第一批高新技术企业认定截止日期的提醒",
        "body_text": "市南区：\n请于 6 月 10 日前完成推荐。",
        "body_html": "<p>市南区：请于 6 月 10 日前完成推荐。</p>",
        "message_id": "<deadline-reminder.1@kjj.qingdao.example>",
        "status": "queued",
        "attempts": 0,
        "created_at": datetime(2021, 6, 1, 1, 0, tzinfo=UTC),
    }
    return OutboxMessage(**(defaults | values))


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def flattened(message: EmailMessage) -> bytes:
    # What smtplib.send_message sends.
    out = BytesIO()
    email.generator.BytesGenerator(out, policy=message.policy).flatten(message, linesep="\r\n")
    return out.getvalue()


def summary(message: EmailMessage) -> dict[str, object]:
    def addresses(name: str) -> list[tuple[str, str]]:
        header = message[name]
        if header is None:
            return []
        return [(a.display_name, a.addr_spec) for a in header.addresses]

    text, html = message.iter_parts()
    return {
        "from": addresses("From"),
        "to": addresses("To"),
        "cc": addresses("Cc"),
        "subject": str(message["Subject"]),
        "date": message["Date"].datetime,
        "message_id": str(message["Message-ID"]),
        "auto": str(message["Auto-Submitted"]),
        "type": message.get_content_type(),
        "parts": [
            (
                p.get_content_type(),
                p.get_content_charset(),
                p["Content-Transfer-Encoding"],
                p.get_content(),
            )
            for p in (text, html)
        ],
        "defects": [type(d).__name__ for d in message.defects],
    }


def expected_addresses(r: OutboxMessage) -> dict[str, list[tuple[str, str]]]:
    def listed(value: str) -> list[tuple[str, str]]:
        return [parseaddr(a) for a in split_addresses(value)]

    return {"from": listed(SENDER), "to": listed(r.recipients), "cc": listed(r.cc)}


def assert_same(r: OutboxMessage) -> bytes:
    """Addresses as the row gives them; everything else as the email package writes it.

    (The email package splits a long display name into two encoded words with a space
    between them, and fails on a name such as "."; written directly, the name is intact.)
    """
    wire = build_wire(r, sender=SENDER, tz=TZ)
    assert wire is not None
    ours = summary(parsed(wire))
    assert {k: ours[k] for k in ("from", "to", "cc")} == expected_addresses(r)
    theirs = summary(parsed(flattened(build_mime(r, sender=SENDER, tz=TZ))))
    for key in ("from", "to", "cc"):
        del ours[key], theirs[key]
    assert ours == theirs
    assert b"\r\n" in wire and b"\n" not in wire.replace(b"\r\n", b"")
    return wire


def test_a_notice_goes_out_as_the_message_the_email_package_builds() -> None:
    wire = assert_same(row())
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))


@settings(max_examples=400, deadline=None)
@given(
    subject=TEXT.filter(
        lambda s: "\r" not in s and "\n" not in s and "=?" not in s and s == s.strip()
    ),
    name=NAME,
    local=LOCAL,
    text=TEXT,
    html=TEXT,
    cc=st.booleans(),
)
def test_any_subject_name_and_body_give_the_same_message(
    subject: str, name: str, local: str, text: str, html: str, cc: bool
) -> None:
    # Bodies outside ASCII take this path (ASCII ones go through the email package).
    text, html = text + "，", html + "。"
    r = row(
        subject=subject,
        recipients=f"{name} <{local}@shinan.qingdao.example>".strip(),
        cc="主任 <city@kjj.qingdao.example>, b@kjj.qingdao.example" if cc else "",
        body_text=text,
        body_html=html,
    )
    assert_same(r)


@pytest.mark.parametrize(
    "values",
    [
        {"recipients": "张三 <张三@例子.中国>"},  # needs SMTPUTF8
        {"body_text": "plain ASCII body"},
        {"subject": "=?utf-8?q?looks_encoded?="},
    ],
)
def test_what_only_the_email_package_writes_goes_through_it(values: dict[str, str]) -> None:
    assert build_wire(row(**values), sender=SENDER, tz=TZ) is None


def test_line_breaks_are_refused_on_both_paths() -> None:
    bad = row(subject="提醒\r\nBcc: everyone@example.com")
    with pytest.raises(Unsendable, match="Subject"):
        build_wire(bad, sender=SENDER, tz=TZ)
    with pytest.raises(Unsendable, match="Subject"):
        build_mime(bad, sender=SENDER, tz=TZ)
