"""A real Dask LocalCluster (processes on 127.0.0.1) gives the in-process result."""

import pytest

from aanntwin.config import RunConfig, TrainParams
from aanntwin.studies.noise_sweep import NoiseSweep, run_noise_sweep

distributed = pytest.importorskip("distributed")


def test_noise_sweep_on_a_dask_cluster_equals_the_in_process_run(tmp_path):
    sweep = NoiseSweep(
        RunConfig(train=TrainParams(epochs=2, batch_size=64)),
        train_levels=[None, 0.1],
        test_levels=[None, 0.2, 0.4],
        kinds=["input", "conv_gain"],
        runs=2,
        normalize_target=None,
    )
    local = run_noise_sweep(sweep, str(tmp_path / "local"), progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = run_noise_sweep(
            sweep, str(tmp_path / "dask"), executor=client.get_executor(), progress=False
        )
    assert len(remote) == 2 * 3 * 2
    assert remote.equals(local)
    assert (tmp_path / "dask" / "results.csv").read_bytes() == (
        tmp_path / "local" / "results.csv"
    ).read_bytes()
