"""Tests of the CSV importer with real files, imported on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.resources
import shutil
import unicodedata
from pathlib import Path

import pytest
import sqlalchemy as sa

from posoutbox import customers, importer
from posoutbox.customers import ImportResult, Rejection
from posoutbox.db import schema
from posoutbox.db.storage import Database
from posoutbox.errors import InvalidValue
from posoutbox.importer import FileProblem, count_rows, read_customer_file

NORTHWIND_HEADER = (
    "customer_id,company_name,contact_name,contact_title,address,city,region,"
    "postal_code,country,phone,fax"
)


def bundled_northwind(tmp_path: Path) -> Path:
    """Copy the bundled Northwind file into tmp_path and return the copy."""
    source = importlib.resources.files("posoutbox").joinpath(
        "data/northwind-customers.csv"
    )
    target = tmp_path / "northwind-customers.csv"
    with importlib.resources.as_file(source) as path:
        shutil.copyfile(path, target)
    return target


def write_file(tmp_path: Path, text: str, name: str = "customers.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def import_file(db: Database, path: Path, mapping: str) -> ImportResult:
    return customers.import_customers(db, read_customer_file(path, mapping))


def rejections_by_field(result: ImportResult) -> dict[str, Rejection]:
    return {rejection.field: rejection for rejection in result.rejections}


# The real Northwind file


def test_northwind_file_rejects_suprd_only(db: Database, tmp_path: Path) -> None:
    path = bundled_northwind(tmp_path)

    result = import_file(db, path, "northwind")

    assert result.added == 90
    assert result.changed == 0
    assert result.rejected_rows == 1
    assert {rejection.line for rejection in result.rejections} == {77}
    rejected = rejections_by_field(result)
    assert sorted(rejected) == ["PHNO", "TFNO"]
    assert rejected["PHNO"].value == "(071) 23 67 22 20"
    assert rejected["TFNO"].value == "(071) 23 67 22 21"
    assert "at most 16 characters" in rejected["PHNO"].reason
    assert "at most 16 characters" in rejected["TFNO"].reason
    assert customers.count_customers(db) == 90
    assert not customers.customer_exists(db, "SUPRD")


def test_northwind_values_are_mapped(db: Database, tmp_path: Path) -> None:
    import_file(db, bundled_northwind(tmp_path), "northwind")

    alfki = customers.get_customer(db, "ALFKI")

    assert alfki["CUNM"] == "Alfreds Futterkiste"
    assert alfki["YREF"] == "Maria Anders"
    assert alfki["CUA1"] == "Obere Str. 57"
    assert alfki["TOWN"] == "Berlin"
    assert alfki["PONO"] == "12209"
    assert alfki["CSCD"] == "DE"
    assert alfki["PHNO"] == "030-0074321"
    assert alfki["TFNO"] == "030-0076545"
    assert alfki["STAT"] == "20"
    assert customers.get_customer(db, "AROUT")["CSCD"] == "GB"
    assert customers.get_customer(db, "GREAL")["CSCD"] == "US"
    assert customers.get_customer(db, "HILAA")["CSCD"] == "VE"


def test_northwind_long_address_continues_in_cua2(db: Database, tmp_path: Path) -> None:
    import_file(db, bundled_northwind(tmp_path), "northwind")

    hilaa = customers.get_customer(db, "HILAA")
    lilas = customers.get_customer(db, "LILAS")

    assert hilaa["CUA1"] == "Carrera 22 con Ave. Carlos Soublette"
    assert hilaa["CUA2"] == "#8-35"
    assert lilas["CUA1"] == "Carrera 52 con Ave. Bolívar #65-98"
    assert lilas["CUA2"] == "Llano Largo"
    for customer in (hilaa, lilas):
        assert f"{customer['CUA1']} {customer['CUA2']}" in (
            "Carrera 22 con Ave. Carlos Soublette #8-35",
            "Carrera 52 con Ave. Bolívar #65-98 Llano Largo",
        )


def test_northwind_region_goes_to_ecar_or_cua3(db: Database, tmp_path: Path) -> None:
    import_file(db, bundled_northwind(tmp_path), "northwind")

    islat = customers.get_customer(db, "ISLAT")
    white = customers.get_customer(db, "WHITC")
    hilaa = customers.get_customer(db, "HILAA")
    alfki = customers.get_customer(db, "ALFKI")

    assert islat["CUA3"] == "Isle of Wight"
    assert islat["ECAR"] == ""
    assert white["ECAR"] == "WA"
    assert white["CUA3"] == ""
    assert hilaa["CUA3"] == "Táchira"
    assert alfki["ECAR"] == ""
    assert alfki["CUA3"] == ""
    long_regions = [
        customer["CUNO"]
        for customer in customers.list_customers(db)
        if customer["CUA3"] != ""
    ]
    assert len(long_regions) == 6


def test_northwind_reimport_changes_nothing(db: Database, tmp_path: Path) -> None:
    path = bundled_northwind(tmp_path)
    import_file(db, path, "northwind")

    again = import_file(db, path, "northwind")

    assert again.added == 0
    assert again.changed == 0
    assert again.unchanged == 90
    assert again.rejected_rows == 1


def test_reimport_updates_changed_lmdt_only(db: Database, tmp_path: Path) -> None:
    path = bundled_northwind(tmp_path)
    import_file(db, path, "northwind")
    # An old change date shows which customers the second import touched.
    with db.transaction() as conn:
        conn.execute(sa.update(schema.customers).values(lmdt=20200101))
    text = path.read_text(encoding="utf-8")
    assert text.count("030-0074321") == 1
    changed = write_file(
        tmp_path, text.replace("030-0074321", "030-0074322"), "changed.csv"
    )

    result = import_file(db, changed, "northwind")

    assert result.changed == 1
    assert result.unchanged == 89
    assert result.added == 0
    alfki = customers.get_customer(db, "ALFKI")
    assert alfki["PHNO"] == "030-0074322"
    assert alfki["LMDT"] != 20200101
    others = [c for c in customers.list_customers(db) if c["CUNO"] != "ALFKI"]
    assert {customer["LMDT"] for customer in others} == {20200101}


def test_northwind_reimport_keeps_a_block(db: Database, tmp_path: Path) -> None:
    path = bundled_northwind(tmp_path)
    import_file(db, path, "northwind")
    customers.change_customer(db, "ALFKI", {"STAT": "90"})

    result = import_file(db, path, "northwind")

    assert result.unchanged == 90
    assert customers.get_customer(db, "ALFKI")["STAT"] == "90"


def test_northwind_unknown_country_is_rejected(db: Database, tmp_path: Path) -> None:
    path = write_file(
        tmp_path,
        f"{NORTHWIND_HEADER}\n"
        "AAAAA,Atlantic Deli,Ann Smith,Owner,1 Main St,Atlantis,,,Atlantis,1,2\n"
        "BBBBB,Bodega Sur,Bea Ruiz,Owner,Calle 2,Madrid,,28001,Spain,3,4\n",
    )

    result = import_file(db, path, "northwind")

    assert result.added == 1
    assert result.rejected_rows == 1
    rejection = result.rejections[0]
    assert rejection.line == 2
    assert rejection.field == "CSCD"
    assert rejection.value == "Atlantis"
    assert customers.get_customer(db, "BBBBB")["CSCD"] == "ES"


def test_unsplittable_address_is_rejected(db: Database, tmp_path: Path) -> None:
    address = "X" * 40
    path = write_file(
        tmp_path,
        f"{NORTHWIND_HEADER}\nAAAAA,Deli,Ann,Owner,{address},Oslo,,0150,Norway,1,2\n",
    )

    result = import_file(db, path, "northwind")

    assert result.rejected_rows == 1
    assert result.rejections[0].field == "CUA1"
    assert result.rejections[0].value == address


# The m3 mapping


def test_m3_file_imports_named_fields(db: Database, tmp_path: Path) -> None:
    path = write_file(
        tmp_path,
        "cuno, CUNM ,CSCD,CUTP,CUCL,STAT,MAIL\n"
        "C1,Café Nord,SE,0,RET,20,kassa@example.com\n"
        "C2,Bar Süd,DE,9,,10,\n",
    )

    result = import_file(db, path, "m3")

    assert result.added == 2
    assert result.rejected_rows == 0
    first = customers.get_customer(db, "C1")
    second = customers.get_customer(db, "C2")
    assert first["CUNM"] == "Café Nord"
    assert first["CSCD"] == "SE"
    assert first["CUCL"] == "RET"
    assert first["MAIL"] == "kassa@example.com"
    assert second["CUTP"] == 9
    assert second["STAT"] == "10"
    assert second["CUCL"] == ""


def test_m3_rejects_each_invalid_field(db: Database, tmp_path: Path) -> None:
    path = write_file(
        tmp_path,
        "CUNO,CUNM,STAT,CSCD\nC1,Fine,20,SE\nC2,Wrong,55,Sweden\n,No number,20,SE\n",
    )

    result = import_file(db, path, "m3")

    assert result.added == 1
    assert result.rejected_rows == 2
    by_line = sorted((r.line, r.field) for r in result.rejections)
    assert by_line == [(3, "CSCD"), (3, "STAT"), (4, "CUNO")]


def test_nfd_text_is_stored_as_nfc(db: Database, tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "Königlich Café")
    assert decomposed != "Königlich Café"
    path = write_file(tmp_path, f"CUNO,CUNM\nC1,{decomposed}\n")

    import_file(db, path, "m3")

    assert customers.get_customer(db, "C1")["CUNM"] == "Königlich Café"


def test_split_region_counts_nfc_characters() -> None:
    assert importer.split_region("WA") == ("WA", "")
    assert importer.split_region("Québec") == ("", "Québec")
    decomposed = unicodedata.normalize("NFD", "Ré")
    assert len(decomposed) == 3
    assert importer.split_region(decomposed) == (decomposed, "")


# Rows and line numbers


def test_malformed_row_is_rejected_on_row(db: Database, tmp_path: Path) -> None:
    path = write_file(tmp_path, "CUNO,CUNM\nC1,One\nC2,Two,extra\nC3,Three\n")

    result = import_file(db, path, "m3")

    assert result.added == 2
    assert result.rejected_rows == 1
    rejection = result.rejections[0]
    assert rejection.line == 3
    assert rejection.field == "row"
    assert "3 values, expected 2" in rejection.reason
    assert not customers.customer_exists(db, "C2")


def test_short_row_is_rejected_on_row(db: Database, tmp_path: Path) -> None:
    path = write_file(tmp_path, f"{NORTHWIND_HEADER}\nAAAAA,Deli\n")

    result = import_file(db, path, "northwind")

    assert result.rejected_rows == 1
    assert result.rejections[0].field == "row"
    assert "2 values, expected 11" in result.rejections[0].reason


def test_multiline_field_counts_its_lines(db: Database, tmp_path: Path) -> None:
    path = write_file(
        tmp_path,
        'CUNO,CUNM,CUA1\nC1,"Two\nline name",Street 1\nC2,Fine,"a\n\nb"\nC3,x,\n'
        "C4,Too long for its field because CUNM allows 36,\n",
    )

    lines = [line for line, _values in read_customer_file(path, "m3")]
    result = import_file(db, path, "m3")

    assert lines == [2, 4, 7, 8]
    assert sorted((r.line, r.field) for r in result.rejections) == [
        (2, "CUNM"),
        (4, "CUA1"),
        (8, "CUNM"),
    ]
    assert result.added == 1


def test_empty_lines_are_skipped(tmp_path: Path) -> None:
    path = write_file(tmp_path, "CUNO,CUNM\r\n\r\nC1,One\r\n\r\nC2,Two\r\n\r\n")

    rows = list(read_customer_file(path, "m3"))

    assert rows == [
        (3, {"CUNO": "C1", "CUNM": "One"}),
        (5, {"CUNO": "C2", "CUNM": "Two"}),
    ]
    assert count_rows(path) == 2


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfCUNO,CUNM\nC1,One\n")

    assert list(read_customer_file(path, "m3")) == [(2, {"CUNO": "C1", "CUNM": "One"})]


def test_count_rows_of_northwind_file(tmp_path: Path) -> None:
    assert count_rows(bundled_northwind(tmp_path)) == 91


# Files that cannot be imported


def test_bad_header_raises_before_import(db: Database, tmp_path: Path) -> None:
    header = NORTHWIND_HEADER.replace(",phone,fax", ",telephone")
    path = write_file(tmp_path, f"{header}\nALFKI,A,B,C,D,E,,1,Germany,2\n")

    with pytest.raises(FileProblem) as raised:
        import_file(db, path, "northwind")

    message = str(raised.value)
    assert "line 1" in message
    assert "missing columns phone, fax" in message
    assert "unknown columns 'telephone'" in message
    assert "customer_id, company_name" in message
    assert customers.count_customers(db) == 0


def test_unknown_m3_column_raises(db: Database, tmp_path: Path) -> None:
    path = write_file(tmp_path, "CUNO,CUNM,COLOR,LMDT\nC1,One,red,20250101\n")

    with pytest.raises(FileProblem) as raised:
        read_customer_file(path, "m3")

    message = str(raised.value)
    assert "unknown columns 'COLOR', 'LMDT'" in message
    assert "expected CUNO and any of CUNM" in message
    assert customers.count_customers(db) == 0


def test_m3_header_without_cuno_raises(tmp_path: Path) -> None:
    path = write_file(tmp_path, "CUNM\nOne\n")

    with pytest.raises(FileProblem, match="missing columns CUNO"):
        read_customer_file(path, "m3")


def test_repeated_column_raises(tmp_path: Path) -> None:
    path = write_file(tmp_path, "CUNO,CUNM,cunm\nC1,One,Two\n")

    with pytest.raises(FileProblem, match="repeated columns CUNM"):
        read_customer_file(path, "m3")


def test_semicolon_header_gets_a_hint(tmp_path: Path) -> None:
    path = write_file(tmp_path, "CUNO;CUNM\nC1;One\n")

    with pytest.raises(FileProblem, match="must be comma-separated"):
        read_customer_file(path, "m3")


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"

    with pytest.raises(FileProblem, match="file not found"):
        read_customer_file(path, "m3")
    with pytest.raises(FileProblem, match="file not found"):
        count_rows(path)


def test_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match="is a directory"):
        read_customer_file(tmp_path, "m3")


def test_empty_file_raises(tmp_path: Path) -> None:
    path = write_file(tmp_path, "")

    with pytest.raises(FileProblem, match="empty file"):
        read_customer_file(path, "m3")


def test_non_utf8_file_raises_before_import(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("CUNO,CUNM\nC1,One\nC2,Café\n".encode("latin-1"))

    with pytest.raises(FileProblem) as raised:
        import_file(db, path, "m3")

    message = str(raised.value)
    assert "line 3" in message
    assert "not UTF-8" in message
    assert "0xe9" in message
    assert customers.count_customers(db) == 0


def test_unclosed_quote_raises_before_import(db: Database, tmp_path: Path) -> None:
    path = write_file(tmp_path, 'CUNO,CUNM\nC1,One\nC2,"Two\nC3,Three\n')

    with pytest.raises(FileProblem) as raised:
        import_file(db, path, "m3")

    message = str(raised.value)
    assert "line 3" in message
    assert "invalid CSV" in message
    assert customers.count_customers(db) == 0


def test_text_after_closing_quote_raises(tmp_path: Path) -> None:
    path = write_file(tmp_path, 'CUNO,CUNM\nC1,"One"x\n')

    with pytest.raises(FileProblem, match="line 2: invalid CSV"):
        read_customer_file(path, "m3")


def test_unknown_mapping_raises(tmp_path: Path) -> None:
    path = write_file(tmp_path, "CUNO\nC1\n")

    with pytest.raises(InvalidValue) as raised:
        read_customer_file(path, "excel")

    assert raised.value.field == "mapping"
    assert "m3 or northwind" in str(raised.value)


# Mapping helpers


def test_split_address_at_last_fitting_blank() -> None:
    assert importer.split_address("Obere Str. 57") == ("Obere Str. 57", "")
    assert importer.split_address("A" * 36) == ("A" * 36, "")
    assert importer.split_address("A" * 36 + " B") == ("A" * 36, "B")
    assert importer.split_address("A" * 37) == ("A" * 37, "")
    assert importer.split_address("A" * 10 + " " + "B" * 30) == ("A" * 10, "B" * 30)


def test_country_code_names_and_aliases() -> None:
    assert importer.country_code("Germany") == "DE"
    assert importer.country_code("UK") == "GB"
    assert importer.country_code("USA") == "US"
    assert importer.country_code("Venezuela") == "VE"
    assert importer.country_code("se") == "SE"
    assert importer.country_code("") == ""
    assert importer.country_code("Atlantis") == "Atlantis"
