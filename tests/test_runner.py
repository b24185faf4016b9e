"""Sweep engine: incremental CSV, resume, canonical order, executors."""

import functools
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aanntwin.errors import AanntwinError
from aanntwin.studies import pools
from aanntwin.studies.runner import ResultStore, Task, run_tasks

CALLS: list[int] = []


def square_task(i: int) -> list[dict]:
    CALLS.append(i)
    return [{"i": i, "sq": i * i, "half": i / 3}, {"i": i, "sq": -i, "half": None}]


def _tasks(n=6):
    return [Task(square_task, {"i": i}, points=2) for i in range(n)]


def test_rows_land_in_task_order_and_floats_round_trip(tmp_path):
    store = ResultStore(tmp_path, ["i", "sq", "half"], {"study": "squares"})
    df = run_tasks(_tasks(), store, ThreadPoolExecutor(3), progress=False)
    assert df["i"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert df["half"].iloc[2] == 1 / 3  # exact
    assert df["half"].isna().sum() == 6  # None is an empty cell
    assert (tmp_path / "config.json").exists()


def test_resume_skips_finished_tasks_and_cuts_a_torn_last_line(tmp_path):
    store = ResultStore(tmp_path, ["i", "sq", "half"], {})
    full = run_tasks(_tasks(), store, progress=False)
    reference = (tmp_path / "results.csv").read_bytes()
    # an interrupted run: two tasks finished, a third torn mid-line
    lines = reference.splitlines(keepends=True)
    (tmp_path / "results.csv").write_bytes(b"".join(lines[:5]) + lines[5][:7])
    CALLS.clear()
    again = run_tasks(_tasks(), ResultStore(tmp_path, ["i", "sq", "half"], {}), progress=False)
    assert sorted(CALLS) == [2, 3, 4, 5]  # 0 and 1 were read back, not recomputed
    assert (tmp_path / "results.csv").read_bytes() == reference
    assert again.equals(full)


@pytest.mark.parametrize(
    "damage",
    [
        lambda lines: lines[:3] + lines[4:],  # a row of task 1 lost mid-file
        lambda lines: lines[:4] + [lines[3]] + lines[4:],  # a row of task 1 repeated
        lambda lines: lines[:3] + [lines[3][:4] + b"\xff\xfe" + lines[3][6:]] + lines[4:],
    ],
    ids=["lost", "repeated", "not-utf8"],
)
def test_resume_reruns_every_task_whose_rows_are_not_whole(tmp_path, damage):
    """Only the last task's row count was checked: a task missing a row mid-file counted as
    done and the final file silently lacked the point."""
    run_tasks(_tasks(), ResultStore(tmp_path, ["i", "sq", "half"], {}), progress=False)
    reference = (tmp_path / "results.csv").read_bytes()
    lines = reference.splitlines(keepends=True)  # header, then 2 rows per task
    (tmp_path / "results.csv").write_bytes(b"".join(damage(lines)))
    CALLS.clear()
    run_tasks(_tasks(), ResultStore(tmp_path, ["i", "sq", "half"], {}), progress=False)
    assert CALLS == [1]
    assert (tmp_path / "results.csv").read_bytes() == reference


def test_a_store_refuses_a_folder_holding_another_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model": {}, "train": {}}')  # a trained run's
    with pytest.raises(AanntwinError, match="not a sweep's config .a trained run's"):
        run_tasks(_tasks(1), ResultStore(tmp_path, ["i", "sq", "half"], {"study": "squares"}),
                  progress=False)  # fmt: skip
    (tmp_path / "config.json").write_text('{"study": "noise"}')
    with pytest.raises(AanntwinError, match="a noise sweep's config, not a squares sweep's"):
        run_tasks(_tasks(1), ResultStore(tmp_path, ["i", "sq", "half"], {"study": "squares"}),
                  progress=False)  # fmt: skip
    assert not (tmp_path / "results.csv").exists()


def test_no_resume_recomputes_and_other_columns_are_refused(tmp_path):
    run_tasks(_tasks(2), ResultStore(tmp_path, ["i", "sq", "half"], {}), progress=False)
    CALLS.clear()
    run_tasks(
        _tasks(2), ResultStore(tmp_path, ["i", "sq", "half"], {}), resume=False, progress=False
    )
    assert sorted(CALLS) == [0, 1]
    with pytest.raises(AanntwinError, match="columns differ"):
        run_tasks(_tasks(2), ResultStore(tmp_path, ["i", "sq"], {}), progress=False)


def test_task_keys_depend_on_arguments_not_on_wrappers():
    assert Task(square_task, {"i": 1}).key == Task(square_task, {"i": 1}).key
    assert Task(square_task, {"i": 1}).key != Task(square_task, {"i": 2}).key
    wrapped = functools.wraps(square_task)(lambda **kw: square_task(**kw))
    assert Task(wrapped, {"i": 1}).key == Task(square_task, {"i": 1}).key


def test_executor_from_args():
    assert pools.executor_from_args(None, None) is None
    assert pools.executor_from_args(1, None) is None
    pool = pools.executor_from_args(2, None)
    try:
        assert pool.submit(square_task, 3).result()[0]["sq"] == 9
    finally:
        pool.shutdown()


def torch_threads(i: int) -> list[dict]:
    import os

    import torch

    return [{"i": i, "threads": torch.get_num_threads(), "pid": os.getpid()}]


def test_local_pool_runs_one_task_here_and_sizes_itself_by_the_work(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(pools, "cpu_cores", lambda: 4)
    pool = pools.executor_from_args("auto", None)
    assert isinstance(pool, pools.LocalPool) and pool.max_workers == 4
    try:
        store = ResultStore(tmp_path / "one", ["i", "threads", "pid"], {})
        one = run_tasks([Task(torch_threads, {"i": 0})], store, pool, progress=False)
        assert pool.pool is None and one["pid"].tolist() == [os.getpid()]  # in this process
        tasks = [Task(torch_threads, {"i": i}) for i in range(2)]
        store = ResultStore(tmp_path / "two", ["i", "threads", "pid"], {})
        two = run_tasks(tasks, store, pool, progress=False)
        assert pool.pool is not None and pool.pool._max_workers == 2  # min(cores, tasks)
        assert set(two["threads"]) == {2}  # cores // workers: no oversubscription
        assert os.getpid() not in set(two["pid"])
    finally:
        pool.shutdown()
    assert pool.pool is None


def test_explicit_workers_get_their_share_of_the_cores_or_threads(monkeypatch):
    monkeypatch.setattr(pools, "cpu_cores", lambda: 6)
    for workers, threads, expected in ((3, None, 2), (2, 1, 1), (8, None, 1)):
        pool = pools.executor_from_args(workers, None, threads)
        try:
            assert pool.submit(torch_threads, 0).result()[0]["threads"] == expected
        finally:
            pool.shutdown()
    monkeypatch.setattr(pools, "cpu_cores", lambda: 1)
    assert pools.executor_from_args("auto", None) is None  # one core: in this process


def test_sweeps_default_to_local_workers():
    from aanntwin.cli import build_parser
    from aanntwin.cli.studies import executor

    parse = build_parser().parse_args
    args = parse(["sweep", "noise", "--out", "o"])
    assert args.workers == "auto"
    assert parse(["sweep", "noise", "--out", "o", "--workers", "AUTO"]).workers == "auto"
    assert parse(["sweep", "noise", "--out", "o", "--workers", "1"]).workers == 1
    pool = executor(args)
    try:
        assert pool is None if pools.cpu_cores() == 1 else isinstance(pool, pools.LocalPool)
    finally:
        if pool is not None:
            pool.shutdown()
    with pytest.raises(AanntwinError, match="exclude each other"):
        executor(parse(["sweep", "noise", "--out", "o", "--workers", "2",
                        "--dask-scheduler", "tcp://x:1"]))  # fmt: skip


def _environment_and_threads(name: str) -> tuple[str | None, int]:
    import os

    import torch

    return os.environ.get(name), torch.get_num_threads()


def test_workers_see_the_environment_of_the_command_as_the_pool_starts(monkeypatch):
    """Workers are forked from a server started once per process; each pool's workers still see
    the command's environment when that pool starts (a cache folder, a data folder), not the
    one the server started with."""
    monkeypatch.setenv("AANNTWIN_TEST_PROBE", "first")
    with pools.process_pool(1, threads=1) as pool:
        assert pool.submit(_environment_and_threads, "AANNTWIN_TEST_PROBE").result() == ("first", 1)
    monkeypatch.setenv("AANNTWIN_TEST_PROBE", "second")
    with pools.process_pool(2, threads=1) as pool:
        seen = {
            pool.submit(_environment_and_threads, "AANNTWIN_TEST_PROBE").result() for _ in range(4)
        }
    assert seen == {("second", 1)}


def _preloaded() -> tuple[bool, bool]:
    import gc
    import sys

    return "aanntwin.studies.noise_sweep" in sys.modules, gc.get_freeze_count() > 0


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork server on this platform")  # fmt: skip
def test_workers_start_with_the_study_modules_loaded_and_frozen():
    """Workers fork from a server that imported torch and the study modules and froze their
    objects (shared pages stay shared): a broken preload would silently cost each worker its
    imports again and ~100 MB."""
    with pools.process_pool(1, threads=1) as pool:
        assert pool.submit(_preloaded).result() == (True, True)


def _private_mb() -> float:
    with open("/proc/self/smaps_rollup") as fh:
        return sum(int(ln.split()[1]) for ln in fh if ln.startswith("Private_")) / 1024


def _optimizer_cost_mb() -> float:
    """Private memory a worker gains by building its first optimizer (MB)."""
    import torch

    before = _private_mb()
    torch.optim.SGD(torch.nn.Linear(4, 2).parameters(), lr=0.1)
    return _private_mb() - before


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup")
                    or "forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="Linux fork server only")  # fmt: skip
def test_a_worker_builds_its_optimizer_on_pages_it_shares_with_the_server():
    """torch.optim imports torch._dynamo on the first optimizer (~70 MB): preloaded by the fork
    server, each training worker shares it instead of importing it again (a sweep's training
    phase set the workbook's memory peak)."""
    with pools.process_pool(1, threads=1) as pool:
        assert pool.submit(_optimizer_cost_mb).result() < 25


def _child_report(path: str, fail: str | None = None) -> tuple[int, bool]:
    """In a child: note the pid in ``path``; fail as asked; else (pid, torch._dynamo loaded)."""
    import sys
    import time

    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    if fail == "error":
        raise AanntwinError("bad setting in the child")
    if fail == "exit":
        os._exit(3)
    if fail == "hang":
        time.sleep(120)
    return os.getpid(), "torch._dynamo" in sys.modules


def test_in_child_returns_the_result_from_another_process(tmp_path):
    pid, dynamo = pools.in_child(_child_report, str(tmp_path / "pid"))
    assert pid != os.getpid() and not dynamo  # a fresh interpreter, not a fork of this one


def test_in_child_raises_the_childs_error_here(tmp_path):
    with pytest.raises(AanntwinError, match="bad setting in the child"):
        pools.in_child(_child_report, str(tmp_path / "pid"), "error")


def test_a_child_that_dies_is_an_error_naming_its_exit_code(tmp_path):
    with pytest.raises(AanntwinError, match="_child_report ended without a result .exit code 3"):
        pools.in_child(_child_report, str(tmp_path / "pid"), "exit")


def test_an_interrupt_while_waiting_kills_the_child(tmp_path):
    """Ctrl-C in a notebook while a model trains in its child: the child ends too."""
    import signal
    import threading
    import time

    pid_file = tmp_path / "pid"

    def interrupt() -> None:
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        pools.in_child(_child_report, str(pid_file), "hang")
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def _in_child_from_a_daemon(path: str, results) -> None:
    import multiprocessing

    try:
        results.put((multiprocessing.current_process().daemon, os.getpid(),
                     pools.in_child(_child_report, path)[0]))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))


def test_in_child_from_a_daemon_process_runs_in_a_child_of_it(tmp_path):
    """Daemon processes (Dask's workers) may not start multiprocessing children; in_child's
    plain subprocess works there too."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    daemon = ctx.Process(target=_in_child_from_a_daemon, args=(str(tmp_path / "pid"), results),
                         daemon=True)  # fmt: skip
    daemon.start()
    got = results.get(timeout=120)
    daemon.join()
    is_daemon, outer, ran_in = got
    assert is_daemon and ran_in not in (outer, os.getpid())


def test_a_script_without_a_main_guard_can_call_in_child(tmp_path):
    """The child does not import the caller's main module again (multiprocessing's spawn did:
    a script calling a notebook helper at top level failed with a bootstrapping error)."""
    script = tmp_path / "script.py"
    script.write_text(
        "import os\n"
        "from aanntwin.studies import pools\n"
        "from tests.test_runner import _child_report\n"
        f"pid, _ = pools.in_child(_child_report, {str(tmp_path / 'pid')!r})\n"
        "print('ran elsewhere', pid != os.getpid())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ran", "elsewhere", "True"]


def test_a_child_that_cannot_start_is_an_error_naming_its_exit_code(tmp_path, monkeypatch):
    """A child that ends before reading its task (here: an interpreter that exits at once) is
    the same one-line error as a child killed mid-call, not a broken pipe."""
    monkeypatch.setattr(pools, "_CHILD", "import sys; sys.exit(5)")
    with pytest.raises(AanntwinError, match="ended without a result .exit code 5"):
        pools.in_child(_child_report, str(tmp_path / "pid"), "x" * 1_000_000)
