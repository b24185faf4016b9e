import itertools

import pandas as pd
import pytest

from aanntwin.config import ModelParams, RunConfig, TrainParams
from aanntwin.errors import AanntwinError, GeometryError
from aanntwin.model import geometry
from aanntwin.studies.architecture import (
    enumerate_geometries,
    pareto_front,
    run_architecture_sweep,
)


def test_enumeration_is_exactly_the_valid_reference_space_in_multiplier_order():
    found = enumerate_geometries((1, 8, 8))
    brute = 0
    for c, k, s, p in itertools.product(
        [1, 2, 4, 8, 16, 32, 64, 128], range(1, 8), range(1, 8), range(1, 8)
    ):
        for pad in range(k):
            try:
                geometry(
                    ModelParams(channels=c, kernel=k, stride=s, padding=pad, pool=p), (1, 8, 8), 10
                )
                brute += 1
            except GeometryError:
                pass
    assert len(found) == brute > 100
    mults = [g.multipliers for _, g in found]
    assert mults == sorted(mults)
    assert all(p.padding < p.kernel for p, _ in found)


def test_every_geometry_of_the_sweep_is_trained_and_tested(tmp_path):
    base = RunConfig(train=TrainParams(epochs=1, batch_size=64))
    df = run_architecture_sweep(
        base, str(tmp_path), space={"channels": [1, 2], "pool": [1]}, limit=5, progress=False
    )
    assert len(df) == 5
    assert df["accuracy"].notna().all() and df["accuracy"].between(0, 1).all()
    assert df["multipliers"].is_monotonic_increasing
    assert (tmp_path / "results.csv").exists() and (tmp_path / "config.json").exists()


def test_pareto_front_keeps_only_undominated_rows():
    df = pd.DataFrame({"multipliers": [10, 20, 20, 30, 40], "accuracy": [0.5, 0.7, 0.6, 0.65, 0.9]})
    front = pareto_front(df)
    assert front["multipliers"].tolist() == [10, 20, 40]
    assert front["accuracy"].tolist() == [0.5, 0.7, 0.9]


def test_bad_spaces_are_refused_before_any_work(tmp_path):
    base = RunConfig()
    with pytest.raises(AanntwinError, match="--channels: 0 is out of range"):
        run_architecture_sweep(base, str(tmp_path), space={"channels": [0]})
    with pytest.raises(AanntwinError, match=r"--kernel \[\]: the list is empty"):
        run_architecture_sweep(base, str(tmp_path), space={"kernel": []})
    with pytest.raises(AanntwinError, match="no valid geometry"):
        run_architecture_sweep(
            base, str(tmp_path), space={"kernel": [7], "stride": [7], "pool": [7]}
        )
