"""Pure rendering of notices: context in, subject + text + inlined HTML out, then a MIME message.

No I/O beyond reading the packaged templates: no database, no SMTP, no network (the CSS
inliner is told not to fetch remote stylesheets). The subject is the ``subject`` block of
the text template, so it is written once per language next to the body it heads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from hnte.notifications import contexts as c

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LANGUAGES = ("zh", "en")
SHANGHAI = ZoneInfo("Asia/Shanghai")

KINDS: dict[str, tuple[str, type]] = {
    "deadline_reminder": ("deadline_reminder", c.DeadlineReminder),
    "overdue_notice": ("overdue_notice", c.OverdueNotice),
    "behind_target": ("behind_target", c.BehindTarget),
    "weekly_digest": ("weekly_digest", c.WeeklyDigest),
    "batch_results": ("batch_results", c.BatchResults),
    "city_summary": ("city_summary", c.CitySummary),
}


@dataclass(frozen=True)
class Rendered:
    kind: str
    subject: str
    text: str
    html: str


# --- template environment ------------------------------------------------------------

_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


def _date_zh(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _date_en(d: date) -> str:
    return f"{d.day} {_EN_MONTHS[d.month - 1]} {d.year}"


def _num(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _refuse_none(value: Any) -> Any:
    # StrictUndefined catches a missing field; this catches a field left None, which
    # would otherwise print "None" in an official notice.
    if value is None:
        raise ValueError("a template printed None: a context value is missing")
    return value


@cache
def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=autoescape,
        undefined=StrictUndefined,
        finalize=_refuse_none,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        date_zh=_date_zh, date_en=_date_en, num=_num, pct=c.format_percent
    )
    return env


@cache
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(load_remote_stylesheets=False)


def render(kind: str, context: Any, language: str = "zh") -> Rendered:
    """Subject, plain text and CSS-inlined HTML of one notice, in Chinese or English."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}; known: {', '.join(KINDS)}")
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
    base, context_class = KINDS[kind]
    if not isinstance(context, context_class):
        raise TypeError(
            f"{kind} needs a {context_class.__name__}, got {type(context).__name__}"
        )
    variables = {"ctx": context, "lang": language}

    text_template = _environment(False).get_template(f"{base}.{language}.txt")
    subject_block = text_template.blocks["subject"]
    subject = " ".join(
        "".join(subject_block(text_template.new_context(dict(variables)))).split()
    )
    if not subject:
        raise ValueError(f"{kind}.{language}: the subject rendered empty")
    text = text_template.render(variables, subject=subject)
    html = _environment(True).get_template(f"{base}.{language}.html").render(
        variables, subject=subject
    )
    # a MIME body ends with a newline; ending with one here keeps the outbox copy and the
    # sent copy identical
    html = _inliner().inline(html).rstrip("\n") + "\n"
    return Rendered(kind=kind, subject=subject, text=text, html=html)


# --- MIME message --------------------------------------------------------------------

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")
_MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]+@[A-Za-z0-9.-]+>$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_header(name: str, value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{name} contains a control character (CR, LF, NUL…): {value!r}")
    return value


def _address(name: str, value: str) -> Address:
    """One mailbox, "addr@host" or "Name <addr@host>"; anything else is refused."""
    _check_header(name, value)
    display, addr = parseaddr(value)
    if value.count("@") != 1 or not _EMAIL.fullmatch(addr):
        raise ValueError(f"{name}: not a single email address: {value!r}")
    return Address(display_name=display, addr_spec=addr)


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    message_id: str,
    date: datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative UTF-8 message (text, then HTML); refuses header injection."""
    if isinstance(to, str) or isinstance(cc, str):
        raise TypeError("to and cc are sequences of addresses, not one string")
    if not to:
        raise ValueError("a message needs at least one To address")
    subject = _check_header("subject", rendered.subject)
    if not subject.strip():
        raise ValueError("empty subject")
    if not _MESSAGE_ID.fullmatch(_check_header("message_id", message_id)):
        raise ValueError(f"not a Message-ID (<id@domain>): {message_id!r}")
    from_address = _address("sender", sender)
    to_addresses = [_address("to", a) for a in to]
    cc_addresses = [_address("cc", a) for a in cc]
    when = date or datetime.now(SHANGHAI)
    if when.tzinfo is None:
        when = when.replace(tzinfo=SHANGHAI)  # business times are Asia/Shanghai

    message = EmailMessage(policy=SMTP)
    message["Subject"] = subject
    message["From"] = from_address
    message["To"] = to_addresses
    if cc_addresses:
        message["Cc"] = cc_addresses
    message["Date"] = when
    message["Message-ID"] = message_id
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message


def make_message_id(dedupe_key: str, domain: str) -> str:
    """The same dedupe key always gives the same Message-ID, so a resend is recognisable."""
    if _CONTROL.search(domain) or not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a domain name: {domain!r}")
    digest = hashlib.sha256(dedupe_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"
