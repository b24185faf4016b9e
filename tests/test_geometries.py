"""``aanntwin geometries``: every valid geometry with its hardware counts, without training."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from aanntwin.cli import main
from aanntwin.config import ModelParams, RunConfig
from aanntwin.runs import run_geometry
from aanntwin.studies.architecture import enumerate_geometries, geometry_table


def test_table_counts_match_the_model_geometry():
    table = geometry_table((1, 8, 8), 10)
    assert len(table) == len(enumerate_geometries((1, 8, 8), 10))
    assert table["multipliers"].is_monotonic_increasing
    row = table[(table.channels == 4) & (table.kernel == 6) & (table.stride == 2)
                & (table.padding == 1) & (table.pool == 1)].iloc[0]  # fmt: skip
    g = run_geometry(RunConfig(dataset="digits", model=ModelParams()))
    assert (row.macs, row.multipliers, row.features) == (g.macs, g.multipliers, g.features)
    assert row.conv_multipliers + row.linear_multipliers == row.multipliers


def test_three_channel_images_have_kernel_squared_times_three_multipliers_per_conv_mac():
    table = geometry_table((3, 32, 32), 10, {"channels": [4], "kernel": "5", "stride": "1:3"})
    assert set(table.conv_multipliers_per_mac) == {5 * 5 * 3}
    assert (table.conv_multipliers == table.conv_macs * 75).all()


def test_cli_filters_by_budget_and_writes_csv(tmp_path, capsys):
    assert main(["geometries", "--max-multipliers", "200", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("5 geometries for digits 1x8x8")
    path = tmp_path / "g.csv"
    assert main(["geometries", "--dataset", "mnist", "--max-multipliers", "5000", "--csv",
                 str(path)]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(f"{len(pd.read_csv(path))} geometries for mnist")
    table = pd.read_csv(path)
    assert len(table) > 0 and (table.multipliers <= 5000).all() and set(table.dataset) == {"mnist"}
    assert main(["geometries", "--kernel", "6", "--channels", "4", "--csv", "-"]) == 0
    streamed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(streamed.kernel) == {6} and set(streamed.channels) == {4}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["geometries", "--max-multipliers", "1"], "no valid geometry for digits 1x8x8"),
        (["geometries", "--kernel", "0"], "--kernel"),
    ],
)
def test_user_errors_are_one_line(argv, needle, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
