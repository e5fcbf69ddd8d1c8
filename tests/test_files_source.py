"""The files source: CSV and Parquet into staging, quarantine with reasons, snapshot semantics."""

from __future__ import annotations

import pandas as pd
import pytest

from connectors.base import SourceError
from connectors.files import FilesSource
from core.canonical import (
    CANONICAL_TABLES,
    DEALS,
    NPS_RESPONSES,
    SchemaError,
    check_frame,
    conform,
)
from okr_store.staging import read_quarantine, read_staged, stage

DEALS_CSV = """\
deal_id,customer_id,name,owner_id,team,pipeline,stage,is_closed,is_won,amount,currency,amount_home,created_at,close_date,deal_type,last_modified_at,is_deleted
D1,C1,Big one,O1,sales-dach,default,Closed Won,true,true,1000,EUR,,2026-01-05T09:00:00Z,2026-02-01,new_business,2026-02-01T10:00:00Z,false
D2,C1,In dollars,O1,sales-dach,default,Closed Won,true,true,1000,USD,,2026-01-05T09:00:00Z,2026-02-10,existing_business,2026-02-10T10:00:00Z,false
D3,C1,Mystery money,O1,sales-dach,default,Closed Won,true,true,1000,XYZ,,2026-01-05T09:00:00Z,2026-02-10,existing_business,2026-02-10T10:00:00Z,false
,C1,No id,O1,sales-dach,default,Proposal,false,false,500,EUR,,2026-01-05T09:00:00Z,,new_business,2026-02-10T10:00:00Z,false
D5,C1,Open,O1,sales-dach,default,Proposal,false,false,500,EUR,,2026-01-05T09:00:00Z,,,2026-02-10T10:00:00Z,false
"""
CUSTOMERS_CSV = "customer_id,name,segment,region\nC1,Acme,SMB,DACH\n"
RESPONSES_CSV = """\
response_id,customer_id,score,submitted_at
R1,C1,9,2026-02-01T10:00:00Z
R2,C1,11,2026-02-02T10:00:00Z
"""
FX_CSV = "currency,rate_to_home,valid_from,valid_to\nUSD,0.9,2026-01-01,2026-02-05\nUSD,0.8,2026-02-05,\n"


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "deals.csv").write_text(DEALS_CSV)
    (tmp_path / "customers.csv").write_text(CUSTOMERS_CSV)
    (tmp_path / "nps_responses.csv").write_text(RESPONSES_CSV)
    (tmp_path / "fx_rates.csv").write_text(FX_CSV)
    return tmp_path


def reports_by_object(reports):
    return {r.object: r for r in reports}


def test_bad_records_are_quarantined_with_reasons_and_counted(engine, folder):
    reports = reports_by_object(stage(FilesSource("files", folder), engine, home_currency="EUR"))
    assert reports[DEALS].quarantined == 2
    assert reports[DEALS].quarantine_reasons == {
        "missing deal_id": 1,
        "unknown currency XYZ (no FX rate to EUR)": 1,
    }
    assert reports[NPS_RESPONSES].quarantine_reasons == {"score outside 0..10": 1}
    quarantine = read_quarantine(engine, source="files")
    assert len(quarantine) == 3
    assert set(quarantine["record_id"].dropna()) == {"D3", "R2"}
    staged = read_staged(engine, DEALS)
    assert sorted(staged["deal_id"]) == ["D1", "D2", "D5"]


def test_home_amounts_use_the_rate_valid_on_the_close_date(engine, folder):
    stage(FilesSource("files", folder), engine, home_currency="EUR")
    staged = read_staged(engine, DEALS).set_index("deal_id")
    assert staged.loc["D1", "amount_home"] == 1000.0
    assert staged.loc["D2", "amount_home"] == pytest.approx(800.0)  # 0.8 from 5 Feb on


def test_resyncing_the_same_files_changes_nothing(engine, folder):
    source = FilesSource("files", folder)
    stage(source, engine, home_currency="EUR")
    again = reports_by_object(stage(source, engine, home_currency="EUR"))
    assert again[DEALS].changed == 0 and again[DEALS].deleted == 0
    assert len(read_quarantine(engine, source="files")) == 3  # replaced, not appended


def test_a_row_removed_from_the_file_is_marked_deleted(engine, folder):
    source = FilesSource("files", folder)
    stage(source, engine, home_currency="EUR")
    (folder / "deals.csv").write_text("\n".join(DEALS_CSV.splitlines()[:2]) + "\n")
    report = reports_by_object(stage(source, engine, home_currency="EUR"))[DEALS]
    assert report.deleted == 2
    staged = read_staged(engine, DEALS).set_index("deal_id")
    assert staged["is_deleted"].to_dict() == {"D1": False, "D2": True, "D5": True}


def test_parquet_files_are_read_too(engine, folder):
    pd.read_csv(folder / "customers.csv").to_parquet(folder / "customers.parquet")
    (folder / "customers.csv").unlink()
    stage(FilesSource("files", folder), engine, home_currency="EUR")
    assert read_staged(engine, "customers")["name"].tolist() == ["Acme"]


def test_missing_required_file_is_a_clear_error(engine, folder):
    (folder / "customers.csv").unlink()
    with pytest.raises(SourceError, match=r"customers\.csv not found"):
        stage(FilesSource("files", folder), engine, home_currency="EUR")


def test_misspelled_column_is_an_error_naming_the_file(engine, folder):
    (folder / "customers.csv").write_text("customer_id,segmnet\nC1,SMB\n")
    with pytest.raises(SourceError, match=r"customers\.csv.*unknown columns \['segmnet'\]"):
        stage(FilesSource("files", folder), engine, home_currency="EUR")


def test_conformed_frames_match_the_canonical_schema():
    for table in CANONICAL_TABLES:
        check_frame(conform(pd.DataFrame(), table, source="x").valid, table)
    with pytest.raises(SchemaError, match="missing columns"):
        check_frame(pd.DataFrame({"deal_id": ["1"]}), DEALS)
