"""``hnte record …`` and ``hnte template``: the decisions people make, from files.

Registered in ``hnte.flows.cli``; this module imports that one only inside commands, so
either may be imported first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hnte.models.application_rows import RowError
from hnte.services.decisions import KINDS, RecordReport

FileArg = Annotated[
    Path | None,
    typer.Argument(
        help=".xlsx or .csv (UTF-8 or GB18030); hnte template KIND writes one", show_default=False
    ),
]
BatchOpt = Annotated[str, typer.Option("--batch", "-b", help='batch code, e.g. "2021-1"')]
StrictOpt = Annotated[bool, typer.Option("--strict", help="record nothing if any row is bad")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON only")]

record_app = typer.Typer(
    help="录入人工决定 / record human decisions from .xlsx or .csv files: district "
    "recommendations, expert scores, inspection outcomes, objections, approvals. "
    "Only the decisions are recorded; the batch flow moves the applications.",
    no_args_is_help=True,
)


@record_app.command("recommendations")
def recommendations(
    batch: BatchOpt,
    file: FileArg = None,
    district: Annotated[
        str | None, typer.Option("--district", "-d", help="with --all: one district only")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="recommend every application still without a decision")
    ] = False,
    strict: StrictOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """区市推荐/退回 / district recommendations (统一社会信用代码, 决定, 理由)."""
    from hnte.flows import cli_common as cli

    _one_source(file, all_)
    if district is not None and not all_:
        raise cli.UserError("--district 只能与 --all 一起使用 / --district needs --all")
    if file is not None:
        _record_file("recommendations", file, batch, strict, as_json)
        return

    from hnte.config.settings import get_settings
    from hnte.models.db import unit_of_work
    from hnte.models.queries import resolve_district
    from hnte.services.decisions import recommend_all

    with unit_of_work(cli.engine()) as session:
        try:
            code = resolve_district(session, district)
        except LookupError as exc:
            raise cli.UserError(str(exc)) from None
        report = recommend_all(
            session,
            batch_code=batch,
            district_code=code,
            operator=get_settings().operator_name(),
            today=cli.today(),
        )
    scope = f"{district} " if district else ""
    _show(
        report,
        batch=batch,
        as_json=as_json,
        line=(
            f"{batch} 批次{scope}共 {report.rows} 件待区市意见：新推荐 {report.applied} 件，"
            f"已有意见未改动 {report.unchanged} 件"
        ),
    )


@record_app.command("scores")
def scores(
    batch: BatchOpt, file: FileArg = None, strict: StrictOpt = False, as_json: JsonOpt = False
) -> None:
    """专家评分 / expert scores (专家编号, 统一社会信用代码, four sub-scores)."""
    _record_file("scores", _require_file(file), batch, strict, as_json)


@record_app.command("inspections")
def inspections(
    batch: BatchOpt, file: FileArg = None, strict: StrictOpt = False, as_json: JsonOpt = False
) -> None:
    """现场考察结论 / inspection outcomes (统一社会信用代码, 考察结论, 说明)."""
    _record_file("inspections", _require_file(file), batch, strict, as_json)


@record_app.command("objections")
def objections(
    batch: BatchOpt, file: FileArg = None, strict: StrictOpt = False, as_json: JsonOpt = False
) -> None:
    """公示异议及处理结果 / objections and their resolution."""
    _record_file("objections", _require_file(file), batch, strict, as_json)


@record_app.command("approvals")
def approvals(
    batch: BatchOpt,
    file: FileArg = None,
    all_: Annotated[
        bool, typer.Option("--all", help="approve every application still without a decision")
    ] = False,
    except_file: Annotated[
        Path | None,
        typer.Option(
            "--except",
            help="with --all: a file whose 统一社会信用代码 column lists "
            "applications to leave undecided",
        ),
    ] = None,
    strict: StrictOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """审批决定 / approvals (统一社会信用代码, 决定, 理由)."""
    from hnte.flows import cli_common as cli

    _one_source(file, all_)
    if except_file is not None and not all_:
        raise cli.UserError("--except 只能与 --all 一起使用 / --except needs --all")
    if file is not None:
        _record_file("approvals", file, batch, strict, as_json)
        return

    from hnte.config.settings import get_settings
    from hnte.models.db import unit_of_work
    from hnte.services.decisions import approve_all, read_credit_codes
    from hnte.services.tabular import write_error_report

    codes: dict[str, int] = {}
    errors: list[RowError] = []
    if except_file is not None:
        _require_exists(except_file)
        codes, errors = read_credit_codes(except_file)
    with unit_of_work(cli.engine()) as session:
        if errors:
            report = RecordReport(kind="approvals", errors=errors)
        else:
            report = approve_all(
                session,
                batch_code=batch,
                except_credit_codes=codes,
                operator=get_settings().operator_name(),
                today=cli.today(),
            )
    if report.errors and except_file is not None:
        report.error_file = write_error_report(except_file, report.errors)
    _show(
        report,
        batch=batch,
        as_json=as_json,
        file=except_file,
        line=(
            f"{batch} 批次共 {report.rows} 件处于「审批」阶段：新批准 {report.applied} 件，"
            f"按 --except 暂不批准 {report.held} 件，已有决定未改动 {report.unchanged} 件"
        ),
        refused="除外名单有误，未批准任何申请 / the exception list has errors, nothing approved",
    )


def template(
    kind: Annotated[str, typer.Argument(help=" | ".join(KINDS), show_default=False)],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help=".xlsx or .csv (default: KIND-template.xlsx)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """生成空白模板（表头与填写说明） / write an empty file to fill in for KIND."""
    from rich.markup import escape

    from hnte.flows import cli_common as cli
    from hnte.services.decisions import write_template

    if kind not in KINDS:
        raise cli.UserError(f"未知的模板类型：{kind}；可选：{', '.join(KINDS)} / unknown kind")
    path = out or Path(f"{kind}-template.xlsx")
    if path.suffix.lower() not in (".xlsx", ".csv"):
        raise cli.UserError(f"模板只能是 .xlsx 或 .csv：{path} / use .xlsx or .csv")
    if path.exists() and not force:
        raise cli.UserError(f"文件已存在：{path}（用 --force 覆盖） / file exists, use --force")
    write_template(kind, path)
    cli.console.print(f"已生成{KINDS[kind].title_zh}模板 / template written: {escape(str(path))}")


def _one_source(file: Path | None, all_: bool) -> None:
    from hnte.flows import cli_common as cli

    if file is None and not all_:
        raise cli.UserError("请指定文件，或使用 --all / give a FILE or --all")
    if file is not None and all_:
        raise cli.UserError(
            "文件与 --all 不能同时使用：先录入文件，再运行 --all / use FILE or --all, not both"
        )


def _require_file(file: Path | None) -> Path:
    from hnte.flows import cli_common as cli

    if file is None:
        raise cli.UserError("请指定文件 / give a FILE")
    return file


def _require_exists(file: Path) -> None:
    from hnte.flows import cli_common as cli

    if not file.exists():
        raise cli.UserError(f"文件不存在：{file} / no such file")


def _record_file(kind: str, file: Path, batch: str, strict: bool, as_json: bool) -> None:
    from hnte.config.settings import get_settings
    from hnte.flows import cli_common as cli
    from hnte.models.db import unit_of_work
    from hnte.services.decisions import record_from_file

    _require_exists(file)
    with unit_of_work(cli.engine()) as session, cli.progress_bar() as bar:
        bar.add_task(f"录入 {file.name}", total=None)
        report = record_from_file(
            session,
            kind,
            file,
            batch_code=batch,
            strict=strict,
            operator=get_settings().operator_name(),
            today=cli.today(),
        )
    _show(
        report,
        batch=batch,
        as_json=as_json,
        file=file,
        line=(
            f"共 {report.rows} 行：新录入 {report.applied}，更正 {report.updated}，"
            f"未变 {report.unchanged}，拒收 {report.rejected_rows} 行"
        ),
        refused=f"--strict：有 {report.rejected_rows} 行有问题，未录入任何决定 / nothing recorded",
    )


def _show(
    report: RecordReport,
    *,
    batch: str,
    as_json: bool,
    line: str,
    file: Path | None = None,
    refused: str = "",
) -> None:
    """Bad rows, the error report and one summary line, or JSON; exit 1 if a row was bad."""
    from rich.markup import escape
    from rich.table import Table

    from hnte.flows import cli_common as cli

    if as_json:
        cli.print_json(
            {
                "kind": report.kind,
                "file": str(file) if file else None,
                "batch": batch,
                "rows": report.rows,
                "applied": report.applied,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "held": report.held,
                "rejected_rows": report.rejected_rows,
                "committed": report.committed,
                "error_file": str(report.error_file) if report.error_file else None,
                "errors": [
                    {"row": e.row, "column": e.column, "reason": e.reason} for e in report.errors
                ],
            }
        )
    else:
        if report.errors:
            table = Table(title=f"有问题的行 / rejected rows（共 {report.rejected_rows} 行）")
            for header in ("行号", "列", "原因"):
                table.add_column(header)
            for e in report.errors[:20]:
                # Reasons quote the operator's cells; "[/]" in one must not be read as markup.
                table.add_row(str(e.row), escape(e.column), escape(e.reason))
            cli.console.print(table)
            if len(report.errors) > 20:
                cli.console.print(f"……其余 {len(report.errors) - 20} 条见错误报告")
            if report.error_file:
                cli.console.print(f"错误报告 / error report: {escape(str(report.error_file))}")
        if report.committed:
            cli.console.print(escape(line))
        else:
            cli.console.print(f"[red]{refused}[/red]")
    if report.errors:
        raise typer.Exit(1)
