"""The characterization CSV's hardening: full-scale units per header field, one full scale per
quantity across files, empty tables, encodings and binary files, and line numbers counted from
the file's first line. Each bad file is a committed data file with one corruption."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from aanntwin.characterization.circuits import EXAMPLE_FILES
from aanntwin.characterization.curves import read_all, read_csv
from aanntwin.cli import main
from aanntwin.errors import DataError

DC, NOISE, MC = ("multiplier", "dc"), ("multiplier", "noise"), ("multiplier", "montecarlo")
RELU, MAC = ("relu", "dc"), ("mac", "dc")
# multiplier_dc.csv: line 4 x_full_scale, 5 w_full_scale, 6 y_full_scale, 9 x,w,y, data from 10
# relu_dc.csv: line 4 x_full_scale, 5 y_full_scale, 8 x,y


def _header(key: str, value: str) -> Callable[[str], str]:
    """Replace the value of header field ``key`` (its meaning after ``|`` kept)."""
    return lambda t: re.sub(rf"^# {key}: [^|\n]*", f"# {key}: {value} ", t, count=1, flags=re.M)


def _line(n: int, text: str) -> Callable[[str], str]:
    """Replace file line ``n`` (1-based)."""

    def edit(t: str) -> str:
        lines = t.split("\n")
        lines[n - 1] = text
        return "\n".join(lines)

    return edit


def _copy(tmp: Path, which: tuple[str, str], name: str, edit=lambda t: t) -> Path:
    path = tmp / name
    path.write_text(edit(EXAMPLE_FILES[which].read_text(encoding="utf-8")), encoding="utf-8")
    return path


def _error(paths: list[Path]) -> str:
    with pytest.raises(DataError) as info:
        read_all(paths)
    return str(info.value)


# --- units per header field


@pytest.mark.parametrize(
    "which, key, value, line, needle",
    [
        (DC, "x_full_scale", "0.1 A", 4, "'0.1 A' is a current; expected a voltage in V"),
        (DC, "w_full_scale", "200 mA", 5, "'200 mA' is a current; expected a voltage in V"),
        (DC, "y_full_scale", "1e-05 V", 6, "'1e-05 V' is a voltage; expected a current in A"),
        (RELU, "x_full_scale", "10 uV", 4, "'10 uV' is a voltage; expected a current in A"),
        (DC, "x_full_scale", "0.1 volt", 4, "unknown unit 'volt' in '0.1 volt'"),
        (DC, "y_full_scale", "10 xA", 6, "unknown unit 'xA'"),
        (DC, "x_full_scale", "0.1", 4, "'0.1' has no unit; expected a voltage"),
        (DC, "x_full_scale", "V 0.1", 4, "'V 0.1' is not 'VALUE UNIT'"),
        (DC, "x_full_scale", "-0.1 V", 4, "a full scale must be a positive finite number"),
    ],
)  # fmt: skip
def test_a_full_scale_in_the_wrong_unit_names_file_line_and_field(
    tmp_path, which, key, value, line, needle
):
    path = _copy(tmp_path, which, "bad.csv", _header(key, value))
    err = _error([path])
    assert err.startswith(f"{path}, line {line}, field '{key}' ({which[0]}): "), err
    assert needle in err, err
    if "positive" not in needle:  # a unit error says what is allowed
        assert "SI prefix (fV," in err or "SI prefix (fA," in err, err


def test_si_prefixes_are_scaled_to_volts_and_amperes(tmp_path):
    edit = lambda t: _header("y_full_scale", "10 µA")(  # noqa: E731
        _header("w_full_scale", "200000 uV")(_header("x_full_scale", "100 mV")(t))
    )
    dc = _copy(tmp_path, DC, "dc.csv", edit)
    noise = _copy(tmp_path, NOISE, "noise.csv", _header("y_full_scale", "10000 nA"))
    relu = _copy(tmp_path, RELU, "relu.csv", _header("x_full_scale", "0.01 mA"))
    tables = {t.label: t for t in read_all([dc, noise, relu, EXAMPLE_FILES[MAC]])}
    got = tables["multiplier dc"]
    assert got.full_scale("x") == (0.1, "V") and got.full_scale("w") == (0.2, "V")
    assert got.full_scale("y") == (1e-05, "A")
    assert tables["relu dc"].full_scale("x") == (1e-05, "A")
    assert tables["multiplier noise"].full_scale("y") == (1e-05, "A")
    assert tables["relu dc"].full_scale("w") is None  # the ReLU has no weight


def test_a_field_given_twice_names_both_lines(tmp_path):
    path = _copy(tmp_path, DC, "twice.csv", _line(7, "# x_full_scale: 0.2 V"))
    with pytest.raises(DataError, match=r"twice\.csv, line 7, field 'x_full_scale': given twice "
                       r"\(also line 4\)"):  # fmt: skip
        read_csv(path)


# --- one full scale per quantity across the files


@pytest.mark.parametrize(
    "first, second, edit, why",
    [
        (DC, NOISE, "y_full_scale", "every analysis of a circuit has the same full scales"),
        (DC, MC, "x_full_scale", "every analysis of a circuit has the same full scales"),
        (DC, MAC, "w_full_scale", "a MAC is multipliers summed"),
        (DC, RELU, "x_full_scale", "the ReLU's input is the MAC output"),
    ],
)
def test_full_scales_that_disagree_name_both_files(tmp_path, first, second, edit, why):
    a = _copy(tmp_path, first, "a.csv")
    value = "20 uA" if edit in ("y_full_scale",) or second == RELU else "0.3 V"
    b = _copy(tmp_path, second, "b.csv", _header(edit, value))
    line = 4 if edit == "x_full_scale" else 5 if edit == "w_full_scale" else 6
    err = _error([a, b])
    assert err.startswith(f"{b}, line {line}, field '{edit}' ({second[0]}) = "), err
    assert f"disagrees with {a}, line " in err and why in err, err
    assert ("2e-05 A" in err and "1e-05 A" in err) or ("0.3 V" in err), err


def test_the_issue_case_noise_at_10_ua_beside_dc_at_20_ua(tmp_path):
    dc = _copy(tmp_path, DC, "dc.csv", _header("y_full_scale", "20 uA"))
    noise = _copy(tmp_path, NOISE, "noise.csv", _header("y_full_scale", "10 uA"))
    err = _error([dc, noise])
    assert f"{noise}, line 6, field 'y_full_scale' (multiplier) = 1e-05 A" in err, err
    assert f"disagrees with {dc}, line 6, field 'y_full_scale' (multiplier) = 2e-05 A" in err, err


def test_equal_full_scales_in_other_spellings_agree(tmp_path):
    noise = _copy(tmp_path, NOISE, "noise.csv", _header("y_full_scale", "10.00000000001 uA"))
    assert len(read_all([EXAMPLE_FILES[DC], noise])) == 2  # within the 1e-9 relative tolerance


def test_one_long_format_file_is_consistent_too(tmp_path):
    rows = ["circuit,x,w,y"]
    rows += [f"multiplier,{x},{w},{x * w}" for w in (-1, 0, 1) for x in (-1, -0.5, 0, 0.5, 1)]
    rows += [f"relu,{x},,{max(x, 0)}" for x in (-1, -0.5, 0, 0.25, 0.5, 1)]
    header = ["# x_full_scale: 0.1 V", "# w_full_scale: 0.2 V", "# y_full_scale: 1e-05 A",
              "# x_full_scale.relu: 2e-05 A"]  # fmt: skip
    path = tmp_path / "long.csv"
    path.write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    with pytest.raises(
        DataError,
        match=r"long\.csv, line 4, field 'x_full_scale\.relu' \(relu\) "
        r"= 2e-05 A .* disagrees with .*long\.csv, line 3, field 'y_full_scale'",
    ):
        read_csv(path)


# --- empty tables, encodings, binary files


def test_a_header_only_file_is_an_error_not_dropped(tmp_path):
    empty = _copy(tmp_path, RELU, "empty.csv", lambda t: "\n".join(t.split("\n")[:8]) + "\n")
    err = _error([EXAMPLE_FILES[DC], empty])
    assert err == f"{empty}, line 8: the table has no data rows (only the column names x, y)"


def test_a_utf8_bom_and_crlf_lines_are_accepted(tmp_path):
    text = EXAMPLE_FILES[DC].read_text(encoding="utf-8").replace("\n", "\r\n")
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (got,) = read_csv(path)
    (plain,) = read_csv(EXAMPLE_FILES[DC])
    assert got.meta == plain.meta and got.frame.equals(plain.frame)
    bad = text.replace("\r\n-1.5,", "\r\nnope,", 1)
    path.write_bytes(b"\xef\xbb\xbf" + bad.encode("utf-8"))
    with pytest.raises(DataError, match=r"bom\.csv, line 10, column 'x': not a finite number"):
        read_csv(path)


@pytest.mark.parametrize(
    "content, needle",
    [
        (lambda t: t.replace("0.1 V", "0.1 \xb5V").encode("latin-1"),
         "line 4: the characterization CSV file is not UTF-8 text (byte 0xb5"),
        (lambda t: t.encode("utf-16"), "is UTF-16; save it as UTF-8"),
        (lambda t: t.encode("utf-16-le"), "is binary or UTF-16 without a byte-order mark"),
        (lambda t: b"\x00\x01\x02" * 40 + b"\n", "is binary or UTF-16 without a byte-order mark"),
        (lambda t: b"\x89PNG\r\n\x1a\n\x00\x00\xff", "is not UTF-8 text (byte 0x89"),
    ],
)  # fmt: skip
def test_other_encodings_and_binary_files_are_one_clear_error(tmp_path, content, needle):
    path = tmp_path / "enc.csv"
    path.write_bytes(content(EXAMPLE_FILES[DC].read_text(encoding="utf-8")))
    err = _error([path])
    assert err.startswith(str(path)) and needle in err, err


# --- malformed rows: line numbers from the file's first line, and the column


@pytest.mark.parametrize(
    "line, row, message",
    [
        (12, "-1.3,-1,1.1,7", r"line 12, column 4 \(after the last\): 4 field\(s\), more than "
         r"the 3 column names on line 9 \(x, w, y\)"),
        (10, "-1.5,-1,1.2,7", r"line 10, column 4 \(after the last\): 4 field\(s\)"),
        (13, "-1.2,-1", r"line 13, column 'y': 2 field\(s\), fewer than the 3 column names"),
        (11, "-1.4,inf,1.1", r"line 11, column 'w': not a finite number \('inf'\)"),
        (14, "-1.1,-1,NaN", r"line 14, column 'y': not a finite number \('NaN'\)"),
    ],
)  # fmt: skip
def test_a_malformed_row_names_its_file_line_and_column(tmp_path, line, row, message):
    path = _copy(tmp_path, DC, "rows.csv", _line(line, row))
    with pytest.raises(DataError, match=r"rows\.csv, " + message):
        read_csv(path)


def test_line_numbers_count_blank_and_comment_lines(tmp_path):
    edit = lambda t: t.replace("# source:", "\n# a note\n\n# source:", 1)  # noqa: E731
    path = _copy(tmp_path, DC, "lines.csv", lambda t: _line(14, "-1.1,?,1")(edit(t)))
    with pytest.raises(DataError, match=r"lines\.csv, line 14, column 'w': not a finite number"):
        read_csv(path)
    path = _copy(tmp_path, DC, "blank.csv", lambda t: _line(12, "")(_line(13, "-1,-1,x")(t)))
    with pytest.raises(DataError, match=r"blank\.csv, line 13, column 'y'"):
        read_csv(path)


# --- the CLI: exit 2, one line on stderr


@pytest.mark.parametrize("case", ["unit", "disagree", "empty", "columns"])
def test_cli_bad_csv_is_exit_2_and_one_line(tmp_path, capsys, case):
    if case == "unit":
        files = [_copy(tmp_path, DC, "u.csv", _header("x_full_scale", "0.1 A"))]
        needles = ["u.csv, line 4, field 'x_full_scale'", "is a current"]
    elif case == "disagree":
        files = [_copy(tmp_path, DC, "dc.csv", _header("y_full_scale", "20 uA")),
                 _copy(tmp_path, NOISE, "noise.csv", _header("y_full_scale", "10 uA"))]  # fmt: skip
        needles = ["noise.csv, line 6", "dc.csv, line 6", "2e-05 A", "1e-05 A"]
    elif case == "empty":
        files = [EXAMPLE_FILES[DC],
                 _copy(tmp_path, RELU, "e.csv", lambda t: "\n".join(t.split("\n")[:8]))]  # fmt: skip
        needles = ["e.csv, line 8: the table has no data rows"]
    else:
        files = [_copy(tmp_path, DC, "c.csv", _line(20, "1,2,3,4"))]
        needles = ["c.csv, line 20, column 4"]
    out = tmp_path / "out"
    argv = ["characterize", "--csv", *map(str, files), "--out", str(out), "--no-plots"]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("aanntwin characterize: error: "), err
    assert "Traceback" not in err and all(n in err for n in needles), err
    assert not out.exists()
