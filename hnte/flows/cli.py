"""The ``hnte`` command line (Typer + Rich). Text for people is Chinese first.

Every listing command takes ``--json`` and then prints JSON only. Errors are one
readable line and a non-zero exit, never a traceback (set HNTE_DEBUG=1 to see one).
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from hnte.config.settings import DEFAULT_DATABASE_URL, get_settings, redact_url
from hnte.flows.cli_common import (
    AsOfOpt,
    BatchOpt,
    DistrictOpt,
    JsonOpt,
    UserError,
    _as_of,
    _require_batch,
    _resolve,
    console,
    engine,
    err,
    lang,
    print_json,
    progress_bar,
    today,
)

HELP = (
    "hnte — 高新技术企业认定工作流引擎 / workflow engine for High and New Technology Enterprise "
    "recognition.\n\nThe database is chosen by HNTE_DATABASE_URL (default: "
    f"{DEFAULT_DATABASE_URL}, a SQLite file in the working folder); the city file by "
    "HNTE_CITY_FILE (default: the bundled Qingdao 2021 file)."
)

# Sub-CLI modules registered with ``_lazy``: command name -> (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {}
_SETTINGS: dict[str, Any] = {
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "add_completion": False,
}


class _LazyGroup(TyperGroup):
    """Imports a sub-CLI module only when its command runs (or help lists it), so that
    ``hnte targets`` does not pay for the imports of ``hnte record``."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            self.commands[cmd_name] = _load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        for name in _LAZY:
            self.get_command(ctx, name)
        # As eager registration listed them: commands, then groups.
        names = super().list_commands(ctx)
        return [n for n in names if not _is_group(self.commands[n])] + [
            n for n in names if _is_group(self.commands[n])
        ]


def _is_group(command: Any) -> bool:
    return isinstance(command, TyperGroup)


def _load(name: str) -> Any:
    """The click command Typer would have built had ``name`` been registered eagerly."""
    from importlib import import_module

    module, attribute = _LAZY[name]
    target = getattr(import_module(module), attribute)
    holder = typer.Typer(**_SETTINGS)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


def _lazy(name: str, module: str, attribute: str) -> None:
    _LAZY[name] = (module, attribute)


app = typer.Typer(help=HELP, no_args_is_help=True, cls=_LazyGroup, **_SETTINGS)
import_app = typer.Typer(help="导入申报名单 / import application lists", no_args_is_help=True)
app.add_typer(import_app, name="import")


@app.command()
def init() -> None:
    """创建或升级数据库并载入城市配置 / create or migrate the database, load the city file."""
    from hnte.config.city import load_city
    from hnte.models.db import get_engine
    from hnte.services.setup import init_database

    settings = get_settings()
    city = load_city(settings.city_file)
    report = init_database(get_engine(), city)
    verb = "已创建" if report.created else "已更新"
    console.print(
        f"{verb}数据库 {redact_url(settings.database_url.get_secret_value())}："
        f"{city.city.name} {city.city.year} 年度，"
        f"{report.districts} 个区市，{report.batches} 个批次"
    )


@import_app.command("applications")
def import_applications(
    file: Annotated[Path, typer.Argument(help=".xlsx or .csv (UTF-8, UTF-8 BOM or GB18030)")],
    batch: Annotated[str, typer.Option("--batch", "-b", help='batch code, e.g. "2021-1"')],
    strict: Annotated[bool, typer.Option(help="import nothing if any row is bad")] = False,
    as_json: JsonOpt = False,
) -> None:
    """导入申报名单 / import applications; bad rows are reported, good rows kept."""
    from hnte.models.db import unit_of_work
    from hnte.services.importing import import_applications as run_import

    if not file.exists():
        raise UserError(f"文件不存在：{file} / no such file")
    with unit_of_work(engine()) as session, progress_bar() as bar:
        task = bar.add_task(f"导入 {file.name}", total=None)
        report = run_import(
            session,
            file,
            batch_code=batch,
            today=today(),
            strict=strict,
            progress=lambda n: bar.advance(task, n),
        )
    summary = {
        "file": str(file),
        "batch": batch,
        "rows": report.rows,
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected_rows": report.rejected_rows,
        "committed": report.committed,
        "error_file": str(report.error_file) if report.error_file else None,
        "errors": [{"row": e.row, "column": e.column, "reason": e.reason} for e in report.errors],
    }
    if as_json:
        print_json(summary)
    else:
        if report.errors:
            table = Table(title=f"有问题的行 / rejected rows（共 {report.rejected_rows} 行）")
            for header in ("行号", "列", "原因"):
                table.add_column(header)
            for e in report.errors[:20]:
                table.add_row(str(e.row), escape(e.column), escape(e.reason))
            console.print(table)
            if len(report.errors) > 20:
                console.print(f"……其余 {len(report.errors) - 20} 条见错误报告")
            console.print(f"错误报告 / error report: {report.error_file}")
        if report.committed:
            console.print(
                f"共 {report.rows} 行：新增 {report.inserted}，更新 {report.updated}，"
                f"未变 {report.unchanged}，拒收 {report.rejected_rows} 行"
            )
        else:
            console.print(
                f"[red]--strict：有 {report.rejected_rows} 行有问题，未导入任何数据[/red]"
            )
    if report.errors:
        raise typer.Exit(1)


@app.command()
def status(batch: BatchOpt = None, district: DistrictOpt = None, as_json: JsonOpt = False) -> None:
    """各区市各阶段申报数 / applications by stage × district."""
    from hnte.models.db import unit_of_work
    from hnte.models.queries import districts, resolve_district, stage_counts
    from hnte.models.stages import PIPELINE, Stage

    columns = [*PIPELINE, Stage.CERTIFIED, Stage.REJECTED, Stage.WITHDRAWN]
    with unit_of_work(engine()) as session:
        code = _resolve(session, resolve_district, district)
        if batch:
            _require_batch(session, batch)
        counts = stage_counts(session, batch_code=batch, district_code=code)
        rows = [d for d in districts(session) if code in (None, d.code)]
    if as_json:
        print_json(
            {
                "batch": batch,
                "districts": [
                    {
                        "code": d.code,
                        "name": d.name,
                        "stages": {s.value: counts.get((d.code, s.value), 0) for s in columns},
                    }
                    for d in rows
                ],
            }
        )
        return
    table = Table(title=f"申报进度 {batch or '全部批次'} / applications by stage")
    table.add_column("区市")
    for s in columns:
        table.add_column(s.label(lang()), justify="right")
    table.add_column("合计", justify="right")
    totals = dict.fromkeys(columns, 0)
    for d in rows:
        values = [counts.get((d.code, s.value), 0) for s in columns]
        for s, v in zip(columns, values, strict=True):
            totals[s] += v
        table.add_row(d.name, *map(str, values), str(sum(values)))
    table.add_row(
        "合计", *(str(totals[s]) for s in columns), str(sum(totals.values())), style="bold"
    )
    console.print(table)


@app.command("applications")
def list_applications(
    batch: BatchOpt = None,
    stage: Annotated[str | None, typer.Option("--stage", "-s", help="stage name")] = None,
    district: DistrictOpt = None,
    limit: Annotated[int | None, typer.Option(help="at most this many rows")] = None,
    as_json: JsonOpt = False,
) -> None:
    """逐条列出申报 / one row per application."""
    from hnte.models.db import unit_of_work
    from hnte.models.queries import application_lines, resolve_district
    from hnte.models.stages import Stage

    if stage is not None and stage not in {s.value for s in Stage}:
        raise UserError(f"未知阶段：{stage}；可选：{', '.join(s.value for s in Stage)}")
    with unit_of_work(engine()) as session:
        code = _resolve(session, resolve_district, district)
        if batch:
            _require_batch(session, batch)
        lines = application_lines(
            session, batch_code=batch, stage=stage, district_code=code, limit=limit
        )
    if as_json:
        print_json([line.__dict__ for line in lines])
        return
    table = Table(title=f"申报名单 / applications（{len(lines)}）")
    for header in ("统一社会信用代码", "企业名称", "区市", "类型", "阶段", "得分", "原因"):
        table.add_column(header)
    kinds = {"first_time": "首次申报", "renewal": "重新认定"}
    for line in lines:
        table.add_row(
            line.credit_code,
            escape(line.name),
            line.district_name,
            kinds.get(line.kind, line.kind),
            Stage(line.stage).label(lang()),
            line.score or "",
            escape(line.reason or ""),
        )
    console.print(table)


def _register_subcommands() -> None:
    # One line per command: name, module, the Typer app or function in it. The module is
    # imported only when the command runs.
    _lazy("record", "hnte.flows.cli_record", "record_app")
    _lazy("outbox", "hnte.flows.cli_outbox", "outbox_app")
    _lazy("template", "hnte.flows.cli_record", "template")
    _lazy("targets", "hnte.flows.cli_targets", "targets")
    _lazy("report", "hnte.flows.cli_report", "report")
    _lazy("backup", "hnte.flows.cli_backup", "backup")


batch_app = typer.Typer(help="批次审核流程 / batch review flow", no_args_is_help=True)
app.add_typer(batch_app, name="batch")


@batch_app.command("run")
def batch_run(
    batch: str,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="从工作池启动的工作进程数（需 PostgreSQL 与 Prefect 服务器）/ "
            "worker flow runs to start from the work pool (PostgreSQL and a Prefect server)",
        ),
    ] = 0,
) -> None:
    """运行批次审核流程并打印流转表 / run the batch_review flow and print what moved."""
    from hnte.models.db import unit_of_work

    with unit_of_work(engine()) as session:
        _require_batch(session, batch)
    if workers:
        from hnte.flows.workers import require_server
        from hnte.services.chunks import require_postgres

        require_postgres(engine())
        require_server()
    from hnte.flows.batch_review import batch_review

    result = batch_review(batch, as_of=_as_of(as_of), workers=workers)
    if as_json:
        print_json(result)
        return
    print_transitions(batch, result["transitions"])


@app.command()
def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool")] = "hnte-review",
) -> None:
    """在 Prefect 服务器上登记审核工作进程部署 / register the review-worker deployment.

    Creates the process work pool if missing. Then, on every machine that should help:
    `prefect worker start --pool hnte-review`, with the same HNTE_DATABASE_URL.
    """
    from hnte.flows.workers import DEPLOYMENT, deploy

    deployment_id = deploy(pool)
    console.print(
        f"已登记部署 {DEPLOYMENT}（工作池 {pool}）/ deployment {DEPLOYMENT} on pool {pool}: "
        f"{deployment_id}"
    )
    console.print(f"各工作机运行 / on each worker machine: prefect worker start --pool {pool}")


def print_transitions(batch: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print(f"批次 {batch}：没有可推进的申报 / nothing was ready to move")
        return
    table = Table(title=f"批次 {batch} 本次流转 / transitions")
    for header, justify in (
        ("流转", "left"),
        ("从", "left"),
        ("到", "left"),
        ("区市", "left"),
        ("数量", "right"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    from hnte.models.stages import Stage

    for r in rows:
        table.add_row(
            r["transition"],
            Stage(r["from"]).label(lang()),
            Stage(r["to"]).label(lang()),
            r["district"],
            str(r["count"]),
        )
    table.add_row("合计", "", "", "", str(sum(r["count"] for r in rows)), style="bold")
    console.print(table)


def _operator_move(
    target_value: str, batch: str, credit_codes: list[str], reason: str, day: date
) -> None:
    from sqlalchemy import select

    from hnte.models.db import unit_of_work
    from hnte.models.stages import Stage
    from hnte.models.tables import Application
    from hnte.services.transitions import move_one_each

    if not reason.strip():
        raise UserError("必须说明理由 / a reason is required (--reason)")
    settings = get_settings()
    with unit_of_work(engine()) as session:
        _require_batch(session, batch)
        found = dict(
            session.connection()
            .execute(
                select(Application.credit_code, Application.id).where(
                    Application.batch_code == batch,
                    Application.credit_code.in_(credit_codes),  # type: ignore[attr-defined]
                )
            )
            .all()
        )
        missing = [c for c in credit_codes if c not in found]
        if missing:
            raise UserError(f"批次 {batch} 中没有这些企业的申报：{', '.join(missing)}")
        results = move_one_each(
            session,
            target=Stage(target_value),
            applications=[(found[c], reason) for c in credit_codes],
            actor=settings.operator_name(),
            as_of=day,
        )
        session.commit()
    moved = sum(r.moved for r in results)
    console.print(f"已将 {moved} 件申报转为「{Stage(target_value).label_zh}」")


@app.command()
def withdraw(
    credit_codes: Annotated[list[str], typer.Argument(help="unified social credit codes")],
    batch: Annotated[str, typer.Option("--batch", "-b")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why")] = "企业申请撤回",
    as_of: AsOfOpt = None,
) -> None:
    """企业撤回申报 / withdraw applications at any open stage."""
    _operator_move("withdrawn", batch, credit_codes, reason, _as_of(as_of))


@app.command()
def reject(
    credit_codes: Annotated[list[str], typer.Argument(help="unified social credit codes")],
    batch: Annotated[str, typer.Option("--batch", "-b")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (required)")],
    as_of: AsOfOpt = None,
) -> None:
    """操作员不予通过 / reject applications at any open stage, with a reason."""
    _operator_move("rejected", batch, credit_codes, reason, _as_of(as_of))


@app.command()
def history(credit_code: str, as_json: JsonOpt = False) -> None:
    """企业全流程记录 / an enterprise's full trail: stage, when, who, why, which flow run."""
    from sqlalchemy import select

    from hnte.models.db import unit_of_work
    from hnte.models.stages import Stage
    from hnte.models.tables import Application, StageEvent

    with unit_of_work(engine()) as session:
        rows = (
            session.connection()
            .execute(
                select(
                    Application.batch_code,
                    StageEvent.business_date,
                    StageEvent.at,
                    StageEvent.from_stage,
                    StageEvent.to_stage,
                    StageEvent.actor,
                    StageEvent.reason,
                    StageEvent.flow_run_id,
                )
                .join(Application, Application.id == StageEvent.application_id)
                .where(Application.credit_code == credit_code.strip().upper())
                .order_by(StageEvent.id)
            )
            .all()
        )
    if as_json:
        print_json([dict(r._mapping) for r in rows])
        return
    if not rows:
        raise UserError(f"没有企业 {credit_code} 的流转记录 / no trail for {credit_code}")
    table = Table(title=f"{credit_code} 流转记录 / trail")
    for header in ("批次", "业务日期", "记录时间(UTC)", "从", "到", "操作人", "理由", "流程运行"):
        table.add_column(header)
    for r in rows:
        table.add_row(
            r.batch_code,
            str(r.business_date),
            r.at.strftime("%Y-%m-%d %H:%M:%S"),
            Stage(r.from_stage).label(lang()),
            Stage(r.to_stage).label(lang()),
            escape(r.actor),
            escape(r.reason or ""),
            (r.flow_run_id or "")[:8],
        )
    console.print(table)


@app.command()
def remind(
    as_of: AsOfOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print, queue nothing")] = False,
    as_json: JsonOpt = False,
) -> None:
    """运行一次提醒任务（截止提醒、逾期、催办）/ run the reminder jobs once."""
    from hnte.flows import jobs

    eng = engine()
    day = _as_of(as_of)
    queued = [
        (name, jobs.JOBS[name](day, engine=eng, dry_run=dry_run)) for name in jobs.REMINDER_JOBS
    ]
    rows = [
        {"job": name, "kind": kind, "to": to, "subject": subject, "key": key}
        for name, result in queued
        for kind, to, subject, key in result.notices
    ]
    duplicates = sum(result.duplicates for _, result in queued)
    if as_json:
        print_json(
            {
                "as_of": day.isoformat(),
                "dry_run": dry_run,
                "notices": rows,
                "already_queued": duplicates,
            }
        )
        return
    verb = "将发送" if dry_run else "已排队"
    table = Table(
        title=f"{day} 提醒 / reminders（{verb} {len(rows)} 封，此前已排队 {duplicates} 封）"
    )
    for header in ("类型", "收件人", "主题"):
        table.add_column(header)
    for r in rows:
        table.add_row(r["kind"], r["to"], escape(r["subject"]))
    console.print(table)
    if not dry_run and rows:
        console.print("邮件将由 outbox 发送：hnte outbox send / queued; send with hnte outbox send")


@app.command()
def serve(
    name: Annotated[str, typer.Option(help="deployment name")] = "hnte",
    scheduler: Annotated[bool, typer.Option(help="also run the scheduled jobs")] = True,
) -> None:
    """以 Prefect 部署方式提供批次审核流程，并运行定时任务 / serve the flow and the scheduler."""
    from hnte.flows.batch_review import batch_review

    engine()
    stop = None
    if scheduler:
        try:
            from hnte.flows.scheduling import start_scheduler
        except ImportError:  # the scheduler lands with the notifications work
            start_scheduler = None
        if start_scheduler is not None:
            stop = start_scheduler()
    console.print(
        f"正在提供部署 batch-review/{name}；在 Prefect UI 或用 "
        f"`prefect deployment run 'batch-review/{name}' -p batch=2021-1` 触发。Ctrl+C 停止。"
    )
    try:
        batch_review.serve(name=name, parameters={"batch": "2021-1"})
    finally:
        if stop is not None:
            stop()


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="folder for everything it writes")
    ] = Path("demo-out"),
    seed: Annotated[int, typer.Option(help="same seed, same year")] = 2021,
    year: Annotated[int | None, typer.Option(help="must match the city file (2021)")] = None,
    scale: Annotated[float, typer.Option(help="batch and stock sizes × this")] = 1.0,
) -> None:
    """演示：模拟一整年的高企认定 / simulate a whole recognition year on SQLite."""
    from hnte.config.city import load_city
    from hnte.config.settings import Settings, use_settings
    from hnte.flows.cli_targets import targets
    from hnte.flows.demo import run_demo

    city = load_city(get_settings().city_file)
    if year is not None and year != city.city.year:
        raise UserError(f"城市配置文件是 {city.city.year} 年度，不能演示 {year} 年 / city file is "
                        f"for {city.city.year}")
    with progress_bar() as bar:
        task = bar.add_task("模拟年度", total=None)

        def advance(day: str, done: int, total: int) -> None:
            bar.update(task, total=total, completed=done, description=f"模拟年度 {day}")

        result = run_demo(out=out, seed=seed, scale=scale, progress=advance)
    log = result.log
    console.print(
        f"导入申报 {log.imported} 件，审核流程运行 {log.flow_runs} 次，"
        f"录入决定 {sum(log.decisions.values())} 条，定时任务 {sum(log.jobs.values())} 次，"
        f"发送邮件 {log.sent} 封"
    )
    use_settings(Settings(database_url=f"sqlite:///{result.database}",
                          city_file=get_settings().city_file))
    try:
        console.print(f"\n[bold]{result.year_end} 年末目标完成情况 / year-end targets[/bold]")
        targets(year=None, as_of=datetime.combine(result.year_end, datetime.min.time()),
                as_json=False)
    finally:
        use_settings(None)
    console.print("\n写出的文件 / written:")
    for label, path in result.files.items():
        console.print(f"  {label:<9} {path}")
    console.print(f"  emails    {log.sent} 封 .eml（索引：{result.files['emails'] / 'index.csv'}）")
    console.print(f"用时 {result.seconds:.1f} 秒 / took {result.seconds:.1f} s")
    console.print(f"之后可用：HNTE_DATABASE_URL=sqlite:///{result.database} hnte targets")


def _user_errors() -> tuple[type[BaseException], ...]:
    from hnte.config.city import CityConfigError
    from hnte.models.stages import TransitionRefused
    from hnte.services.chunks import NeedsPrefectServer, WorkersNeedPostgres
    from hnte.services.importing import UnknownBatch
    from hnte.services.tabular import FileRejected

    return (
        UserError,
        CityConfigError,
        FileRejected,
        UnknownBatch,
        TransitionRefused,
        LookupError,
        WorkersNeedPostgres,
        NeedsPrefectServer,
    )



def _secrets() -> list[str]:
    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - settings themselves may be what failed
        return []
    values = []
    if settings.smtp_password:
        values.append(settings.smtp_password.get_secret_value())
    from sqlalchemy.engine import make_url

    try:
        password = make_url(settings.database_url.get_secret_value()).password
    except Exception:  # noqa: BLE001
        password = None
    if password:
        values.append(str(password))
    return [v for v in values if v]


def scrub(text: str) -> str:
    """Remove every configured secret from a message meant for a person."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def main() -> None:
    # Prefect's own settings: this deployment has no internet, so no telemetry calls.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except (click.exceptions.Exit, typer.Exit) as e:
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        err.print("已取消 / aborted")
        sys.exit(130)
    except (click.ClickException, typer.TyperException) as e:  # usage errors: typer's own
        e.show()  # type: ignore[attr-defined]
        sys.exit(getattr(e, "exit_code", 2))
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into a line
        if os.environ.get("HNTE_DEBUG"):
            raise
        from sqlalchemy.exc import OperationalError

        if isinstance(e, OperationalError):
            url = redact_url(get_settings().database_url.get_secret_value())
            first = scrub(str(e.orig if e.orig is not None else e)).strip().splitlines()
            err.print(
                f"[red]错误：无法访问数据库 / error: cannot use the database[/red] {url}："
                f"{first[0] if first else type(e).__name__}",
                highlight=False,
            )
            sys.exit(1)
        if isinstance(e, _user_errors()):
            err.print(f"[red]错误 / error:[/red] {scrub(str(e))}", highlight=False)
            sys.exit(1)
        err.print(
            f"[red]内部错误 / internal error:[/red] {type(e).__name__}: {scrub(str(e))[:500]}"
            "（设置 HNTE_DEBUG=1 查看详情 / set HNTE_DEBUG=1 for details）",
            highlight=False,
        )
        sys.exit(2)


_register_subcommands()

if __name__ == "__main__":
    main()
