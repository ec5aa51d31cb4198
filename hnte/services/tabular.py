"""Read the operators' spreadsheets (.xlsx, .csv) into rows of text, and write error reports.

Everything that can make a whole file unusable (its type, size, encoding, a missing
column) raises ``FileRejected`` with one line naming the file; everything about a single
row is left to the caller's validation, which reports ``RowError``s.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import python_calamine

from hnte.models.application_rows import RowError

# A title line ("2021年第一批高新技术企业申报名单") often sits above the header row.
HEADER_SEARCH_ROWS = 10
# Refuse an .xlsx whose members would inflate to more than this many times the size limit.
ZIP_EXPANSION_FACTOR = 20
# Stripped from both ends of every cell; CR, LF and tab are kept so that validation can
# refuse them in names instead of hiding them.
_CELL_PADDING = " \u3000\u00a0\ufeff"
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# The start of a <c> or <row> tag of sheet XML (any namespace prefix), and the same tag
# up to its r="B7" attribute as calamine reads it: any case, either quotes, spaces around
# "=", other attributes' quoted values skipped whole (they may hold ">").
_SHEET_TAG = re.compile(rb"<(?:[\w.-]+:)?(c|row)(?=[\s/>])")
_UP_TO_R = rb"""(?:[^>"']|"[^"]*"|'[^']*')*?\sr\s*=\s*["']([A-Za-z]*)([0-9]*)["']"""
_SHEET_REF = re.compile(_SHEET_TAG.pattern + _UP_TO_R)


class FileRejected(Exception):
    """The whole file cannot be read; the message is one line, Chinese then English."""

    def __init__(self, path: Path, reason_zh: str, reason_en: str):
        self.path = path
        self.reason_zh = reason_zh
        self.reason_en = reason_en
        super().__init__(f"文件 {path.name}：{reason_zh} / file {path.name}: {reason_en}")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024
    max_rows: int = 200_000
    max_cell_chars: int = 10_000
    # calamine allocates a sheet's whole used range at once (32 bytes a cell) and aborts
    # the process when it cannot: a 6 KB file with cells at A1 and XFD1048576 asks 512 GB.
    max_sheet_cells: int = 10_000_000


@dataclass(frozen=True)
class Table:
    """Rows keyed by canonical column; ``headers`` are the canonical keys found, in file order.

    Each row is (row number as Excel shows it, header included, counting from 1;
    canonical key -> cell text). A column that is absent from the file is absent
    from every row's mapping.
    """

    path: Path
    headers: tuple[str, ...]
    rows: list[tuple[int, dict[str, str]]]


def read_table(
    path: Path,
    columns: Mapping[str, Sequence[str]],
    *,
    required: Collection[str],
    limits: Limits = Limits(),
) -> Table:
    """Read the first sheet of an .xlsx or a comma-separated .csv (UTF-8 or GB18030)."""
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise FileRejected(
            path,
            f"不支持的文件类型「{path.suffix or '无扩展名'}」，请使用 .xlsx 或 .csv",
            f"unsupported file type {path.suffix or '(none)'!r}, use .xlsx or .csv",
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileRejected(path, "文件不存在或无法读取", f"cannot read the file ({exc})") from exc
    if size > limits.max_bytes:
        raise FileRejected(
            path,
            f"文件过大（{size} 字节，上限 {limits.max_bytes} 字节）",
            f"file too large ({size} bytes, limit {limits.max_bytes})",
        )
    raw_rows = _xlsx_rows(path, limits) if suffix == ".xlsx" else _csv_rows(path, limits)
    return _to_table(path, raw_rows, columns, required, limits)


def write_error_report(path: Path, errors: Sequence[RowError]) -> Path:
    """Write ``<stem>.errors.csv`` next to ``path`` (UTF-8 with BOM, for Excel); return it."""
    report = path.with_name(f"{path.stem}.errors.csv")
    with report.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("行号", "列", "原因"))
        for error in errors:
            writer.writerow(
                (error.row, neutralise_cell(error.column), neutralise_cell(error.reason))
            )
    return report


def neutralise_cell(value: str) -> str:
    """Make text that a spreadsheet would run as a formula read as plain text."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def _xlsx_rows(path: Path, limits: Limits) -> list[list[str]]:
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise FileRejected(
            path, "不是有效的 .xlsx 文件（文件损坏或格式不符）", f"not a valid .xlsx file ({exc})"
        ) from exc
    ceiling = ZIP_EXPANSION_FACTOR * limits.max_bytes
    if inflated > ceiling:
        raise FileRejected(
            path,
            f"解压后内容过大（{inflated} 字节，上限 {ceiling} 字节）",
            f"uncompressed content too large ({inflated} bytes, limit {ceiling})",
        )
    cells = _largest_sheet_range(path)
    if cells > limits.max_sheet_cells:
        raise FileRejected(
            path,
            f"工作表范围过大（{cells} 个单元格，上限 {limits.max_sheet_cells}），"
            "请删除远离数据区的单元格",
            f"sheet range too large ({cells} cells, limit {limits.max_sheet_cells})",
        )
    try:
        with python_calamine.CalamineWorkbook.from_path(path) as workbook:
            if not workbook.sheet_names:
                raise FileRejected(path, "工作簿中没有工作表", "the workbook has no sheet")
            sheet = workbook.get_sheet_by_index(0)
            # Keep the empty area before the data so that row numbers match Excel's.
            values = sheet.to_python(skip_empty_area=False)
    except python_calamine.CalamineError as exc:
        raise FileRejected(
            path, "不是有效的 .xlsx 文件（文件损坏或格式不符）", f"not a valid .xlsx file ({exc})"
        ) from exc
    return [[_cell_text(value) for value in row] for row in values]


def _largest_sheet_range(path: Path) -> int:
    """Rows × columns of the widest range calamine would allocate for any member read as
    a sheet. Every member is scanned: the workbook's relationships, not a member's name,
    say which one is the first sheet. Declared sizes are bounded already, and zipfile,
    like calamine, stops at a member's declared size."""
    largest = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    # In bounded reads: one read() inflates the whole compressed stream
                    # before cutting it to the declared size.
                    data = b"".join(iter(lambda m=member: m.read(1 << 20), b""))
                largest = max(largest, _sheet_range(data))
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,  # an encrypted member
        ValueError,
        NotImplementedError,  # an unknown compression method or zip version
    ) as exc:
        raise FileRejected(
            path, "不是有效的 .xlsx 文件（文件损坏或格式不符）", f"not a valid .xlsx file ({exc})"
        ) from exc
    return largest


def _sheet_range(data: bytes) -> int:
    refs = _SHEET_REF.findall(data)
    if len(refs) == len(_SHEET_TAG.findall(data)):
        # The usual file: every row and cell says where it is, so the maxima are the range.
        rows = max((int(digits or 0) for digits in {r[2] for r in refs}), default=0)
        columns = max((_column_number(letters) for letters in {r[1] for r in refs}), default=0)
        return rows * columns
    # A row or cell without r follows the one before it, as calamine places it.
    row = column = rows = columns = 0
    for tag in _SHEET_TAG.finditer(data):
        ref = _SHEET_REF.match(data, tag.start())
        letters, digits = (ref[2], ref[3]) if ref else (b"", b"")
        if tag[1] == b"row":
            row, column = (int(digits) if digits else row + 1), 0
            continue
        column = _column_number(letters) if letters else column + 1
        rows, columns = max(rows, int(digits) if digits else row), max(columns, column)
    return rows * columns


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + letter - 64
    return number


def _cell_text(value: object) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "是" if value else "否"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        # Excel keeps 15 significant digits; a formula's cached 1234.5600000000001 is
        # the 1234.56 the operator sees.
        return format(value, ".15g")
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _csv_rows(path: Path, limits: Limits) -> Iterator[list[str]]:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FileRejected(
            path, "无法识别文件编码，请另存为 UTF-8 或 GB18030 编码的 CSV",
            "cannot decode the file, save it as UTF-8 or GB18030 CSV",
        )
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        yield from reader
    except csv.Error as exc:
        # The csv module's own field limit (131,072 characters) trips before ours can.
        if "field larger than field limit" in str(exc):
            raise _cell_too_large(path, reader.line_num, limits) from exc
        raise FileRejected(
            path, f"CSV 格式错误（第 {reader.line_num} 行附近）",
            f"malformed CSV near line {reader.line_num} ({exc})",
        ) from exc


def _to_table(
    path: Path,
    raw_rows: Iterable[list[str]],
    columns: Mapping[str, Sequence[str]],
    required: Collection[str],
    limits: Limits,
) -> Table:
    lookup = {
        _header_key(spelling): key for key, spellings in columns.items() for spelling in spellings
    }
    positions: dict[str, int] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    for number, raw in enumerate(raw_rows, start=1):
        if positions is None:
            if number > HEADER_SEARCH_ROWS:
                break
            positions = _find_columns(path, raw, lookup, columns)
            if positions is not None:
                _check_required(path, positions, columns, required)
            continue
        cells = {
            key: raw[index].strip(_CELL_PADDING) if index < len(raw) else ""
            for key, index in positions.items()
        }
        if not any(value.strip() for value in cells.values()):
            continue
        for key, value in cells.items():
            if len(value) > limits.max_cell_chars:
                raise _cell_too_large(path, number, limits, _label(columns, key))
        if len(rows) >= limits.max_rows:
            raise FileRejected(
                path, f"数据行数超过上限 {limits.max_rows} 行，请拆分文件",
                f"more than {limits.max_rows} data rows, split the file",
            )
        rows.append((number, cells))
    if positions is None:
        wanted = "、".join(_label(columns, key) for key in columns if key in required)
        raise FileRejected(
            path,
            f"找不到表头行（前 {HEADER_SEARCH_ROWS} 行中没有可识别的列名；应包含：{wanted}）",
            f"no header row found in the first {HEADER_SEARCH_ROWS} rows",
        )
    ordered = tuple(sorted(positions, key=positions.__getitem__))
    return Table(path=path, headers=ordered, rows=rows)


def _find_columns(
    path: Path, raw: list[str], lookup: Mapping[str, str], columns: Mapping[str, Sequence[str]]
) -> dict[str, int] | None:
    """The positions of the recognised columns, or None if this row is not the header."""
    positions: dict[str, int] = {}
    for index, header in enumerate(raw):
        key = lookup.get(_header_key(header))
        if key is None:
            continue
        if key in positions:
            label = _label(columns, key)
            raise FileRejected(
                path, f"列「{label}」出现了两次", f"column {label!r} appears twice",
            )
        positions[key] = index
    return positions or None


def _check_required(
    path: Path,
    positions: Mapping[str, int],
    columns: Mapping[str, Sequence[str]],
    required: Collection[str],
) -> None:
    missing = [key for key in columns if key in required and key not in positions]
    if missing:
        labels = "、".join(_label(columns, key) for key in missing)
        english = ", ".join(missing)
        raise FileRejected(path, f"缺少必需的列：{labels}", f"missing required columns: {english}")


def _header_key(text: str) -> str:
    """Compare headers ignoring whitespace (line breaks too), BOMs, width and ASCII case."""
    folded = unicodedata.normalize("NFKC", text).replace("\ufeff", "")
    return "".join(folded.split()).lower()


def _label(columns: Mapping[str, Sequence[str]], key: str) -> str:
    spellings = columns.get(key)
    return spellings[0] if spellings else key


def _cell_too_large(path: Path, row: int, limits: Limits, column: str = "") -> FileRejected:
    where = f"「{column}」列" if column else ""
    return FileRejected(
        path,
        f"第 {row} 行{where}单元格超过 {limits.max_cell_chars} 个字符",
        f"row {row}: a cell is longer than {limits.max_cell_chars} characters",
    )
