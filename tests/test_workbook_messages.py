"""Every workbook parameters-file error names the parameters file it comes from (one line,
exit 2, nothing written): nonideality values in a mapping or a named file, repeated variant
names within one file or across several."""

from __future__ import annotations

import pytest

from aanntwin.cli import main


def _workbook(tmp_path, capsys, *files: str) -> str:
    out = tmp_path / "reports"
    argv = ["workbook", *(a for f in files for a in ("--params", f)), "--out", str(out)]
    assert main(argv) == 2
    assert not out.exists()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nonidealities: {input_noise: -1}\n", "nonidealities.input_noise = -1.0: out of range"),
        ("notebooks:\n  02_training: {nonidealities: {input_noise: -1}}\n",
         "notebooks: 02_training: nonidealities.input_noise = -1.0: out of range"),
        ("variants:\n  - {name: a, nonidealities: {input_noise: -1}}\n",
         "variant a: nonidealities.input_noise = -1.0: out of range"),
        ("nonidealities: NL\n", "input_noise = -3.0: out of range"),
    ],
)  # fmt: skip
def test_a_bad_nonideality_names_the_parameters_file(tmp_path, capsys, text, needle):
    nl = tmp_path / "nl.json"
    nl.write_text('{"input_noise": -3}')
    params = tmp_path / "p.yaml"
    params.write_text(text.replace("NL", str(nl)))
    err = _workbook(tmp_path, capsys, str(params))
    assert err.startswith(f"aanntwin workbook: error: {params}: "), err
    assert needle in err, err


def test_a_repeated_variant_name_names_the_parameters_file(tmp_path, capsys):
    params = tmp_path / "b.yaml"
    params.write_text("variants:\n  - {name: x}\n  - {name: x, seed: 1}\n")
    err = _workbook(tmp_path, capsys, str(params))
    assert err == (f"aanntwin workbook: error: {params}: variant name 'x' is used 2 times; each "
                   "variant (report folder) needs its own name")  # fmt: skip


def test_a_variant_name_repeated_across_files_names_both_files(tmp_path, capsys):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("name: x\n")
    two.write_text("name: x\nseed: 1\n")
    err = _workbook(tmp_path, capsys, str(one), str(two))
    assert err.startswith(f"aanntwin workbook: error: {one} and {two}: variant name 'x'"), err
