"""Importing residents and providers from .xlsx and .csv files into a real database."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import openpyxl
import pytest

from dispatch.config import REPO_ROOT
from dispatch.imports import ImportFileError, ImportReport, import_file
from dispatch.residents import get_resident
from dispatch.runtime import Runtime
from providers.registry import get_provider, provider_by_licence
from tests.registry_seed import Geo, id_number, licence_number, seed_catalogue, seed_geography

TEMPLATES = REPO_ROOT / "dispatch" / "imports" / "templates"
HEADER = ["身份证号", "姓名", "性别", "手机", "固定电话", "地址", "区", "街道", "社区", "居住状况", "慢性病"]
HEADER += ["补贴项目", "紧急联系人1姓名", "紧急联系人1关系", "紧急联系人1电话"]
ID_A = id_number(dt.date(1940, 5, 6), 122)  # women
ID_B = id_number(dt.date(1942, 7, 8), 224)
ID_C = id_number(dt.date(1936, 1, 2), 311)  # a man


def resident_row(**cells: str) -> list[str]:
    return [cells.get(column, "") for column in HEADER]


def good_rows() -> list[list[str]]:
    return [
        resident_row(
            身份证号=ID_A,
            姓名="王秀兰",
            性别="女",
            手机="13947100001",
            固定电话="0471-6912345",
            地址="海东路12号",
            社区="海东路社区",
            居住状况="独居",
            慢性病="高血压",
            补贴项目="高龄老人服务补贴",
            紧急联系人1姓名="李明",
            紧急联系人1关系="儿子",
            紧急联系人1电话="13947100002",
        ),
        resident_row(
            身份证号=ID_B,
            姓名="赵桂英",
            固定电话="6912346",
            地址="大学西路3号",
            区="赛罕区",
            社区="幸福社区",
            居住状况="空巢",
            紧急联系人1姓名="赵强",
            紧急联系人1关系="儿子",
            紧急联系人1电话="139 4710 0003",
        ),
        resident_row(
            身份证号=ID_C,
            姓名="张宝山",
            性别="男",
            手机="１３９４７１００００４",
            居住状况="与家人同住",
            慢性病="冠心病",
        ),
    ]


def write_csv(path: Path, rows: Sequence[Sequence[object]], *, encoding: str = "utf-8-sig") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


@pytest.fixture
async def geo(runtime: Runtime) -> Geo:
    async with runtime.pool.acquire() as conn:
        await seed_catalogue(conn)
        return await seed_geography(conn)


def counts(report: ImportReport) -> tuple[int, int, int, int]:
    return report.created, report.updated, report.unchanged, report.rejected


async def test_templates_import_cleanly_and_twice_changes_nothing(runtime: Runtime, geo: Geo) -> None:
    for kind in ("residents", "providers"):
        report = await import_file(runtime, kind, TEMPLATES / f"{kind}.csv")
        assert report.errors == []
        assert report.ignored_columns == ()
        assert counts(report) == (2, 0, 0, 0)
        again = await import_file(runtime, kind, TEMPLATES / f"{kind}.csv")
        assert counts(again) == (0, 0, 2, 0)


async def test_good_xlsx_then_reimport_changes_nothing(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "老人.xlsx", [HEADER, *good_rows()])
    report = await import_file(runtime, "residents", path)
    assert report.errors == []
    assert counts(report) == (3, 0, 0, 0)
    assert "3 created, 0 updated, 0 unchanged, 0 rejected" in report.describe()

    async with runtime.pool.acquire() as conn:
        stamps = await conn.fetch("SELECT id, updated_at FROM residents ORDER BY id")
        wang_id = await conn.fetchval("SELECT id FROM residents WHERE name = '王秀兰'")
        card = await get_resident(conn, wang_id)
    assert card is not None
    assert card.place is not None
    assert card.place.community == "海东路社区"
    assert [p.e164 for p in card.phones] == ["+8613947100001", "+864716912345"]
    assert [(c.name, c.relation, c.phone_e164) for c in card.contacts] == [("李明", "儿子", "+8613947100002")]
    assert card.resident.subsidy_programme == "GAOLING"
    assert card.resident.living_situation == "alone"

    again = await import_file(runtime, "residents", path)
    assert counts(again) == (0, 0, 3, 0)
    async with runtime.pool.acquire() as conn:
        assert await conn.fetch("SELECT id, updated_at FROM residents ORDER BY id") == stamps


async def test_a_changed_row_is_an_update(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    await import_file(runtime, "residents", write_csv(tmp_path / "a.csv", [HEADER, *good_rows()]))
    rows = good_rows()
    rows[1][5] = "大学西路5号"
    report = await import_file(runtime, "residents", write_csv(tmp_path / "b.csv", [HEADER, *rows]))
    assert counts(report) == (0, 1, 2, 0)


async def test_bad_rows_are_reported_and_good_rows_imported(
    runtime: Runtime, geo: Geo, tmp_path: Path
) -> None:
    good = good_rows()
    bad_check_digit = id_number(dt.date(1945, 1, 1), 12)[:-1]
    bad_check_digit += "1" if id_number(dt.date(1945, 1, 1), 12)[-1] != "1" else "2"
    blank = [""] * len(HEADER)

    def row(id_no: str, **cells: str) -> list[str]:
        values = dict(zip(HEADER, good[2], strict=True)) | {"身份证号": id_no, "性别": ""} | cells
        return [values[h] for h in HEADER]

    rows = [
        HEADER,
        good[0],  # row 2
        row(bad_check_digit),  # row 3
        row(id_number(dt.date(1946, 2, 2), 21), 手机="1234", 社区="火星社区"),  # row 4
        blank,  # row 5
        good[2],  # row 6
        row(ID_A, 姓名="王秀兰"),  # row 7: the same person as row 2
        row(id_number(dt.date(1947, 3, 3), 31), 性别="女"),  # row 8: a man's ID number
        row(id_number(dt.date(1948, 4, 4), 41), 紧急联系人1姓名="张三", 紧急联系人1电话="no"),  # row 9
        row(id_number(dt.date(1949, 5, 5), 51), 社区="幸福社区"),  # row 10: two of that name
        row(id_number(dt.date(1950, 6, 6), 61), 居住状况="群居", 补贴项目="没有这个"),  # row 11
    ]
    report = await import_file(runtime, "residents", write_csv(tmp_path / "bad.csv", rows))
    assert counts(report) == (2, 0, 0, 7)
    found = {(e.row, e.column) for e in report.errors}
    assert found == {
        (3, "身份证号"),
        (4, "手机"),
        (4, "社区"),
        (7, "身份证号"),
        (8, "性别"),
        (9, "紧急联系人1电话"),
        (10, "社区"),
        (11, "居住状况"),
        (11, "补贴项目"),
    }
    reasons = {(e.row, e.column): e.reason for e in report.errors}
    assert "check digit" in reasons[3, "身份证号"]
    assert "火星社区" in reasons[4, "社区"]
    assert "row 2" in reasons[7, "身份证号"]
    assert "2 communities" in reasons[10, "社区"]
    assert "没有这个" in reasons[11, "补贴项目"]
    assert "row 4, 手机: " in report.describe()
    async with runtime.pool.acquire() as conn:
        names = await conn.fetch("SELECT name FROM residents ORDER BY name")
    assert sorted(r["name"] for r in names) == sorted(["王秀兰", "张宝山"])

    again = await import_file(runtime, "residents", tmp_path / "bad.csv")
    assert counts(again) == (0, 0, 2, 7)


async def test_missing_columns_leave_stored_values_alone(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    await import_file(runtime, "residents", TEMPLATES / "residents.csv")
    wang = id_number(dt.date(1941, 3, 9), 124)
    phones_only = write_csv(
        tmp_path / "phones.csv", [["身份证号", "姓名", "手机"], [wang, "王秀兰", "13947100099"]]
    )
    report = await import_file(runtime, "residents", phones_only)
    assert counts(report) == (0, 1, 0, 0)
    async with runtime.pool.acquire() as conn:
        card = await get_resident(conn, await conn.fetchval("SELECT id FROM residents WHERE name = '王秀兰'"))
    assert card is not None
    assert card.resident.medication == "二甲双胍 每日两次"
    assert card.resident.subsidy_programme == "GAOLING"
    assert card.place is not None
    assert [c.name for c in card.contacts] == ["李明", "李红"]
    # the new mobile replaces the old one; the landline, which the file has no column for, stays
    assert [p.e164 for p in card.phones] == ["+8613947100099", "+864716912345"]
    assert counts(await import_file(runtime, "residents", phones_only)) == (0, 0, 1, 0)


async def test_english_headers_and_a_title_row(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    rows: list[Sequence[object]] = [
        ["呼和浩特市居家老人信息表（2026年1月）"],
        [
            "ID number",
            "Name",
            "Mobile",
            "Community",
            "Living situation",
            "Contact1 name",
            "contact1_phone",
            "备用",
        ],
        [ID_A, "王秀兰", 13947100001, "新城区/海拉尔东路街道/幸福社区", "alone", "李明", "13947100002", "x"],
        [ID_B, "赵桂英", "13947100005", "", "living alone", "", "", ""],
        [],
        [ID_C, "张宝山", "", "工大社区", "with_family", "", "", ""],
    ]
    report = await import_file(runtime, "residents", write_xlsx(tmp_path / "en.xlsx", rows))
    assert report.ignored_columns == ("备用",)
    assert counts(report) == (2, 0, 0, 1)
    assert [(e.row, e.column) for e in report.errors] == [(4, "Living situation")]


async def test_an_id_number_excel_rounded_is_refused(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    rows: list[list[object]] = [["身份证号", "姓名"], [float(ID_C), "张宝山"], ["'" + ID_A, "王秀兰"]]
    report = await import_file(runtime, "residents", write_xlsx(tmp_path / "rounded.xlsx", rows))
    assert counts(report) == (1, 0, 0, 1)
    assert report.errors[0].row == 2
    assert "Excel has rounded it" in report.errors[0].reason
    # the CSV way of keeping Excel from turning the number into a float
    quoted = write_csv(tmp_path / "quoted.csv", [["身份证号", "姓名"], [f'="{ID_B}"', "赵桂英"]])
    assert counts(await import_file(runtime, "residents", quoted)) == (1, 0, 0, 0)


async def test_gb18030_csv(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gbk.csv", [HEADER, *good_rows()], encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    report = await import_file(runtime, "residents", path)
    assert counts(report) == (3, 0, 0, 0)
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM residents WHERE name = '赵桂英'") == 1


async def test_utf8_without_bom_and_tab_separated(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    path = tmp_path / "tabs.csv"
    path.write_text("\n".join("\t".join(row) for row in [HEADER, *good_rows()]), encoding="utf-8")
    report = await import_file(runtime, "residents", path)
    assert counts(report) == (3, 0, 0, 0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("old.xls", b"\xd0\xcf\x11\xe0", "save as .xlsx"),
        ("notes.txt", b"hello", ".csv or .xlsx"),
        ("data.json", b"{}", "expected a .xlsx or .csv file"),
        ("fake.xlsx", "身份证号,姓名\n".encode(), "not a readable .xlsx file"),
        ("binary.csv", b"PK\x03\x04\x00\x00", "binary data"),
        ("headless.csv", "姓名,手机\n王秀兰,13947100001\n".encode(), "身份证号"),
        ("nothing.csv", b"", "no header row"),
    ],
)
async def test_files_that_cannot_be_imported(
    runtime: Runtime, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message.replace(".", r"\.")):
        await import_file(runtime, "residents", path)


async def test_a_missing_file_or_unknown_kind(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="no such file"):
        await import_file(runtime, "residents", tmp_path / "absent.xlsx")
    with pytest.raises(ImportFileError, match="residents or providers"):
        await import_file(runtime, "teams", TEMPLATES / "residents.csv")


async def test_providers_from_xlsx(runtime: Runtime, geo: Geo, tmp_path: Path) -> None:
    header = [
        "执照号",
        "名称",
        "联系人",
        "短信号码",
        "电话",
        "服务能力（并发单数）",
        "状态",
        "服务项目",
        "服务区域",
    ]
    rows: list[Sequence[object]] = [
        header,
        [
            licence_number(1),
            "康乐家政",
            "刘经理",
            13947102001,
            "0471-6933001",
            5,
            "正常",
            "HK01:45;HK02",
            "新城区",
        ],
        [
            licence_number(2),
            "颐康养老",
            "",
            "13947102002",
            "",
            "",
            "",
            "LC01",
            "大学西路街道/幸福社区、工大社区",
        ],
        [licence_number(3)[:-1] + "I", "坏执照", "", "13947102003", "", "", "", "", ""],
        [licence_number(4), "未知项目", "", "13947102004", "", "two", "", "XX01", "火星区"],
    ]
    path = write_xlsx(tmp_path / "服务商.xlsx", rows)
    report = await import_file(runtime, "providers", path)
    assert counts(report) == (2, 0, 0, 2)
    assert {(e.row, e.column) for e in report.errors} == {
        (4, "执照号"),
        (5, "服务能力（并发单数）"),
        (5, "服务项目"),
        (5, "服务区域"),
    }
    async with runtime.pool.acquire() as conn:
        first = await provider_by_licence(conn, licence_number(1))
        assert first is not None
        assert (first.capacity, first.sms_e164, first.phone_e164) == (5, "+8613947102001", "+864716933001")
        second = await provider_by_licence(conn, licence_number(2))
        assert second is not None
        card = await get_provider(conn, second.id)
    assert card is not None
    assert [(a.district, a.community) for a in card.areas] == [("赛罕区", "幸福社区"), ("赛罕区", "工大社区")]
    assert [(i.item_code, i.price_fen) for i in card.items] == [("LC01", 6000)]
    assert counts(await import_file(runtime, "providers", path)) == (0, 0, 2, 2)


async def test_progress_bar_on_stderr_only_when_asked(
    runtime: Runtime, geo: Geo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "p.csv", [HEADER, *good_rows()])
    await import_file(runtime, "residents", path, progress=False)
    assert capsys.readouterr().err == ""
    await import_file(runtime, "residents", path, progress=True)
    captured = capsys.readouterr()
    assert "residents" in captured.err
    assert "3/3" in captured.err
    assert captured.out == ""


async def test_careline_import_command(db_dsn: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        await seed_catalogue(conn)
        await seed_geography(conn)

    async def careline(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatch.cli",
            *args,
            cwd=REPO_ROOT,
            env={**os.environ, "CARELINE_DATABASE_URL": db_dsn, "CARELINE_LOGGING_LEVEL": "WARNING"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        # asyncio's debug mode (make test) may log a slow step on a busy machine; nothing else may be there.
        lines = [line for line in err.decode().splitlines(True) if "WARNING asyncio: Executing" not in line]
        return process.returncode, out.decode(), "".join(lines)

    code, out, err = await careline("import", "residents", str(TEMPLATES / "residents.csv"), "--no-progress")
    assert (code, err) == (0, "")
    assert "2 created" in out
    bad = write_csv(tmp_path / "bad.csv", [["身份证号", "姓名"], ["150102", "王秀兰"]])
    code, out, _ = await careline("import", "residents", str(bad), "--no-progress")
    assert code == 1
    assert "row 2, 身份证号: an ID number has 18 characters, this has 6" in out
    code, _, err = await careline("import", "residents", str(tmp_path / "x.xls"))
    assert code == 1
    assert err.startswith("careline: x.xls: this is an old Excel .xls file")
