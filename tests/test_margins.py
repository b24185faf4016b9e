"""The sign-off margin table (characterized circuit vs spec) and notebook 05's file handling."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from aanntwin.config import Nonidealities
from aanntwin.errors import AanntwinError
from aanntwin.io import write_json_atomic
from aanntwin.report import signoff
from aanntwin.studies.margins import margin_table, weight_bits


def spec(**limits) -> pd.DataFrame:
    """A spec table as 04 writes it (the columns the margins read), with these limits."""
    units = {"input_noise": ("input", "V (std)"), "conv2d_out_noise": ("conv", "V (std)"),
             "conv2d_gain_mismatch": ("conv", "relative (std)"),
             "conv2d_weight_bits": ("conv", "bits (min, not counting sign)"),
             "linear_weight_bits": ("linear", "bits (min, not counting sign)")}  # fmt: skip
    rows = [{"stage": units[q][0], "quantity": q, "limit": v, "unit": units[q][1]}
            for q, v in limits.items()]  # fmt: skip
    rows += [
        {"stage": "conv", "quantity": "MACs", "limit": 36, "unit": "count"},
        {"stage": "input", "quantity": "input voltage range", "limit": "0..1", "unit": "V"},
    ]
    return pd.DataFrame(rows)


def by_quantity(res) -> dict[str, dict]:
    return {r["quantity"]: r for r in res.table.to_dict("records")}


def test_pass_needs_every_spec_d_quantity_characterized_and_within():
    nl = Nonidealities(input_noise=0.01, conv2d_out_noise=0.02, conv2d_gain_mismatch=0.05,
                       conv2d_weight_bits=5, conv2d_input_clip=2.0)  # fmt: skip
    res = margin_table(nl, spec(input_noise=0.04, conv2d_out_noise=0.02,
                                conv2d_gain_mismatch=0.1, conv2d_weight_bits=4))  # fmt: skip
    rows = by_quantity(res)
    assert res.verdict == "PASS", res.reason
    assert rows["input_noise"]["ratio"] == pytest.approx(4.0)  # limit / value: at most
    assert rows["conv2d_out_noise"]["ratio"] == pytest.approx(1.0)  # on the limit passes
    assert rows["conv2d_weight_bits"]["ratio"] == pytest.approx(5 / 4)  # value / min: at least
    assert rows["conv2d_weight_bits"]["must_be"] == ">= limit"
    assert rows["input_noise"]["must_be"] == "<= limit"
    clip = rows["conv2d_input_clip (input range)"]  # the clip must cover the 0..1 V input range
    assert (clip["characterized"], clip["limit"], clip["ratio"]) == (2.0, 1.0, 2.0)
    assert "MACs" not in rows  # hardware counts are no margins


def test_fail_names_the_failing_quantity_and_the_direction_per_quantity():
    nl = Nonidealities(input_noise=0.08, conv2d_weight_bits=3, conv2d_input_clip=2.0)
    res = margin_table(nl, spec(input_noise=0.04, conv2d_weight_bits=4))
    rows = by_quantity(res)
    assert res.verdict == "FAIL" and "input_noise" in res.reason
    assert "conv2d_weight_bits" in res.reason  # 3 bits < the 4 needed
    assert (
        rows["input_noise"]["ratio"] == pytest.approx(0.5)
        and rows["input_noise"]["status"] == "FAIL"
    )
    assert rows["conv2d_weight_bits"]["ratio"] == pytest.approx(0.75)
    # more bits than needed pass, less noise than allowed passes: the direction is per quantity
    res = margin_table(nl.replace(input_noise=0.01, conv2d_weight_bits=8),
                       spec(input_noise=0.04, conv2d_weight_bits=4))  # fmt: skip
    assert res.verdict == "PASS", res.reason


def test_not_characterized_is_incomplete_and_extra_fields_are_listed():
    nl = Nonidealities(input_noise=0.01, relu_cutoff=0.02, conv2d_input_clip=2.0)
    res = margin_table(nl, spec(input_noise=0.04, conv2d_weight_bits=4))
    rows = by_quantity(res)
    assert res.verdict == "INCOMPLETE" and "conv2d_weight_bits" in res.reason
    assert rows["conv2d_weight_bits"]["status"] == "not characterized"
    assert math.isnan(rows["conv2d_weight_bits"]["ratio"])
    assert rows["relu_cutoff"]["status"] == "characterized, not spec'd"
    assert "relu_cutoff" not in res.reason  # an unbounded extra does not block the verdict
    # a failure outranks the unverified rest
    assert (
        margin_table(
            nl.replace(input_noise=0.1), spec(input_noise=0.04, conv2d_weight_bits=4)
        ).verdict
        == "FAIL"
    )


def test_units_are_never_mixed():
    nl = Nonidealities(input_noise=0.01, conv2d_input_clip=2.0)
    table = spec(input_noise=0.04).assign(unit=lambda t: t["unit"].where(
        t["quantity"] != "input_noise", "relative (std)"))  # fmt: skip
    res = margin_table(nl, table)
    row = by_quantity(res)["input_noise"]
    assert row["status"] == "not comparable (spec in relative, characterized in V)"
    assert math.isnan(row["ratio"]) and res.verdict == "INCOMPLETE"
    # every compared row states one unit, the characterized field's own
    ok = margin_table(nl, spec(input_noise=0.04))
    assert by_quantity(ok)["input_noise"]["unit"] == "V"


def test_no_tolerable_value_passes_only_an_absent_effect():
    table = spec(input_noise=float("nan"))
    assert (
        margin_table(Nonidealities(input_noise=0.001, conv2d_input_clip=2.0), table).verdict
        == "FAIL"
    )
    assert (
        margin_table(Nonidealities(input_noise=0.0, conv2d_input_clip=2.0), table).verdict == "PASS"
    )


def test_bad_spec_tables_are_one_line_errors():
    with pytest.raises(AanntwinError, match="column 'unit' missing"):
        margin_table(Nonidealities(), spec(input_noise=0.1).drop(columns="unit"))
    with pytest.raises(AanntwinError, match="quantity 'bogus' is no Nonidealities field"):
        margin_table(Nonidealities(), pd.DataFrame([{"stage": "x", "quantity": "bogus",
                                                     "limit": 1, "unit": "V"}]))  # fmt: skip


def test_weight_bits_are_read_from_the_spec_table():
    table = spec(conv2d_weight_bits=4, linear_weight_bits=float("nan"))
    assert weight_bits(table) == {"conv": 4, "linear": None}


def test_missing_files_give_one_line_naming_the_notebook(tmp_path, capsys):
    so = signoff.load(tmp_path)
    line = capsys.readouterr().out
    assert so.margins is None and line.count("\n") == 1
    assert "run 01_characterization first" in line and "run 04_specs first" in line
    assert signoff.table(so) is None and signoff.figure(so) is None
    said, verdict = signoff.sentences(so)
    assert verdict == "INCOMPLETE" and "01_characterization" in said[0]
    (tmp_path / "specs").mkdir()
    spec(input_noise=0.04).to_csv(tmp_path / "specs" / "spec_table.csv", index=False)
    signoff.load(tmp_path)
    line = capsys.readouterr().out
    assert "01_characterization" in line and "04_specs" not in line


def test_signoff_reads_what_01_and_04_write(tmp_path, capsys):
    (tmp_path / "specs").mkdir()
    (tmp_path / "characterization").mkdir()
    spec(input_noise=0.04, conv2d_weight_bits=4).to_csv(tmp_path / "specs" / "spec_table.csv",
                                                        index=False)  # fmt: skip
    write_json_atomic(tmp_path / "characterization" / "nonidealities.json",
                      {"input_noise": 0.01, "conv2d_input_clip": 1.5})  # fmt: skip
    so = signoff.load(tmp_path)
    assert so.margins.verdict == "INCOMPLETE"
    said, verdict = signoff.sentences(so)
    text = " ".join(said)
    assert verdict == "INCOMPLETE" and "conv >= 4 bits" in text and "04's spec table" in text
    assert "input_noise" in text or "conv2d_input_clip" in text  # the smallest headroom named
    figures = signoff.headlines(so)
    assert figures["signoff_unverified"] == (1, "quantities")
    assert figures["signoff_failing"] == (0, "quantities")
    assert figures["signoff_smallest_margin"] == (pytest.approx(1.5), "ratio")
    assert signoff.figure(so) is not None
