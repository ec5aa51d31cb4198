"""``hnte outbox``: list the email outbox, send what is due now, requeue failed mail.

Registered in ``cli.py`` with ``app.add_typer(outbox_app, name="outbox")``. The shared
helpers are imported inside the commands, so this module loads whether ``cli.py``
imports it at its top or at its bottom.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

outbox_app = typer.Typer(
    help="邮件发件箱 / the email outbox: list, send now, retry failed", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON only")]
DistrictOpt = Annotated[
    str | None, typer.Option("--district", "-d", help="district name or division code")
]
STATUS_LABELS = {"queued": "待发送", "sent": "已发送", "failed": "失败"}


@outbox_app.command("list")
def list_outbox(
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="queued, sent or failed")
    ] = None,
    district: DistrictOpt = None,
    limit: Annotated[int, typer.Option(help="at most this many rows, newest first")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """列出发件箱中的邮件（最新在前）/ list outbox messages, newest first."""
    from hnte.flows.cli_common import UserError, _resolve, console, engine, print_json
    from hnte.models.db import unit_of_work
    from hnte.models.queries import districts, resolve_district
    from hnte.notifications.outbox import list_messages

    if status is not None and status not in STATUS_LABELS:
        raise UserError(f"未知状态：{status}；可选：{', '.join(STATUS_LABELS)}")
    with unit_of_work(engine()) as session:
        code = _resolve(session, resolve_district, district)
        messages = list_messages(session, status=status, district_code=code, limit=limit)
        names = {d.code: d.name for d in districts(session)}
    if as_json:
        print_json([m.model_dump(exclude={"body_text", "body_html"}) for m in messages])
        return
    table = Table(title=f"发件箱 / outbox（{len(messages)}）")
    for header in ("id", "类型", "区市", "收件人", "主题", "状态", "尝试次数", "最后错误"):
        table.add_column(header, overflow="fold")
    for m in messages:
        table.add_row(
            str(m.id),
            m.kind,
            names.get(m.district_code or "", m.district_code or ""),
            m.recipients.replace(",", ", "),
            m.subject,
            STATUS_LABELS.get(m.status, m.status),
            str(m.attempts),
            m.last_error or "",
        )
    console.print(table)


@outbox_app.command("send")
def send(
    limit: Annotated[int, typer.Option(help="send at most this many")] = 10_000,
    as_json: JsonOpt = False,
) -> None:
    """立即发送到期的邮件 / send due messages now over one SMTP connection."""
    from hnte.config.settings import get_settings
    from hnte.flows.cli_common import console, engine, print_json
    from hnte.notifications.smtp import dispatch

    report = dispatch(engine(), get_settings(), limit=limit)
    if as_json:
        print_json(
            {
                "attempted": report.attempted,
                "sent": report.sent,
                "retried": report.retried,
                "failed": report.failed,
                "errors": report.errors,
                "elapsed_seconds": round(report.elapsed, 3),
            }
        )
    else:
        console.print(
            f"尝试 {report.attempted} 封：已发送 {report.sent}，稍后重试 {report.retried}，"
            f"失败 {report.failed}（{report.elapsed:.1f} 秒）",
            highlight=False,
        )
        for line in report.errors[:20]:
            console.print(f"  {line}", highlight=False, markup=False)
        if len(report.errors) > 20:
            console.print(f"  ……其余 {len(report.errors) - 20} 条见 hnte outbox list")
    # Queued for a retry is normal operation; a refusal or an unreachable server is not.
    if report.failed or (report.errors and report.attempted == 0):
        raise typer.Exit(1)


@outbox_app.command("retry")
def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="outbox ids to send again")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="requeue every failed message")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """把失败的邮件重新排队（例如改正地址之后）/ requeue failed messages."""
    from hnte.flows.cli_common import UserError, console, engine, print_json
    from hnte.models.db import unit_of_work
    from hnte.notifications.outbox import retry_failed

    if bool(ids) == all_failed:
        raise UserError("请给出邮件编号，或使用 --all-failed（二者选一）/ give ids or --all-failed")
    with unit_of_work(engine()) as session:
        count = retry_failed(session, None if all_failed else ids)
        session.commit()
    if as_json:
        print_json({"requeued": count})
        return
    console.print(f"已重新排队 {count} 封 / requeued {count}", highlight=False)
    if ids and count < len(set(ids)):
        console.print(
            f"其余 {len(set(ids)) - count} 个编号不存在或不是失败状态 / "
            "the other ids are unknown or not failed",
            highlight=False,
        )
