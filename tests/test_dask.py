"""A sweep's results do not depend on where it runs: in-process (on more torch threads than
the workers), on 1 or 2 local worker processes, on the default local pool and on a real Dask
LocalCluster (processes on 127.0.0.1), each training its models itself (its own empty cache)."""

import pytest
import torch

from aanntwin.config import RunConfig, TrainParams
from aanntwin.studies import pools
from aanntwin.studies.noise_sweep import NoiseSweep, run_noise_sweep

SWEEP = NoiseSweep(
    RunConfig(train=TrainParams(epochs=2, batch_size=64)),
    train_levels=[None, 0.1],
    test_levels=[None, 0.2, 0.4],
    kinds=["input", "conv_gain"],
    runs=2,
    normalize_target=None,
)


def _run(tmp_path, monkeypatch, name, executor=None):
    monkeypatch.setenv("AANNTWIN_CACHE", str(tmp_path / f"cache-{name}"))  # trains again
    try:
        df = run_noise_sweep(SWEEP, str(tmp_path / name), executor=executor, progress=False)
    finally:
        if executor not in (None, "auto"):
            executor.shutdown()
    return df, (tmp_path / name / "results.csv").read_bytes()


def test_noise_sweep_is_the_same_in_process_on_local_workers_and_on_dask(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # in-process: other threads than the workers' (training is pinned)
    try:
        local, csv = _run(tmp_path, monkeypatch, "local")
    finally:
        torch.set_num_threads(before)
    assert len(local) == 2 * 3 * 2
    executors = {
        "one": pools.executor_from_args(1, None),  # None: in-process
        "two": pools.executor_from_args(2, None),
        "auto": pools.LocalPool(2),  # the CLI default on two cores
        "own": "auto",  # the sweep starts and stops its own pool (notebook 04)
    }
    for name, pool in executors.items():
        df, data = _run(tmp_path, monkeypatch, name, pool)
        assert df.equals(local), name
        assert data == csv, name


def test_noise_sweep_on_a_dask_cluster_equals_the_in_process_run(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    local, csv = _run(tmp_path, monkeypatch, "local")
    monkeypatch.setenv("AANNTWIN_CACHE", str(tmp_path / "cache-dask"))  # before the workers start
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
        remote, data = _run(tmp_path, monkeypatch, "dask", client.get_executor())
    assert remote.equals(local)
    assert data == csv
