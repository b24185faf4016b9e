"""Study benchmarks: one JSON object per line ({"figure", "value", "unit", ...context}).

Figures (MNIST from --data-dir, default ../shared/data/mnist beside the checkout; the default
model is trained once through the checkpoint cache, later runs read it back):
- noise_grid_eval_s: the evaluation part of the full reference noise grid for one kind (12
  training levels x 102 test levels = 1,224 points, 10k test images each): the 12 models are
  trained first (checkpoint-cached, not timed), then reading them back, normalizing and
  evaluating every level is timed; --noise-kind picks the kind (default input, the costliest:
  nothing before the noise can be reused);
- clean_pass_s: a plain torch conv-ReLU-linear pass over the 10k test images, for scale;
- spec_table_s: ``aanntwin specs`` on the default MNIST model normalized to 1 V (all eight kinds,
  20 samples per evaluation, target 1 point at 95 %), with its joint accuracy, its searches on
  local worker processes as the command runs them (``--workers auto``: worker_processes), the
  joint check in this process (peak_rss_mb: this process's peak, earlier figures included),
  beside the floor pass; then the same table by ``aanntwin normalize`` + ``aanntwin specs`` as
  subprocesses (command_s, with start-up and data load; command_peak_rss_mb and
  command_tree_pss_mb: the memory of the command's process tree, as below);
- reference_experiment_s: the whole reference noise experiment (``aanntwin sweep noise
  --train-levels reference --test-levels reference --kinds input,conv_out,relu_out,linear_out``
  on MNIST: 12 trainings, 4,896 points) as a subprocess with its own empty ``AANNTWIN_CACHE``
  (minutes), with its memory (peak_rss_mb, tree_rss_mb, tree_pss_mb: see below), beside a plain
  torch floor measured in the same run: (12 plain trainings on the same schedule + 4,896 floor
  passes) / the worker processes it used (--workers: passed to the sweep, default auto);
- workbook_mnist_s: ``aanntwin workbook --params examples/workbook-mnist.yaml`` (needs ../shared
  beside the checkout) as a subprocess with an empty cache into a temporary folder (minutes),
  with its memory (as reference_experiment_s) and each notebook's seconds (papermill's), beside
  the floor pass;
- fidelity_rms_pct_fs / fidelity_max_pct_fs (per shipped multiplier): the twin as written against
  ngspice on 200 held-out 8-input MAC conditions (needs ngspice; skipped with a note otherwise),
  beside the fitted cells summed, with the simulation time; cell_twin_rms_pct_fs: one cell of
  the twin as written against its DC data, beside the parametric and tabulated fits' residuals;
- quant_grid_s: the quantization study's full reference grid for the final linear layer with one
  zero mode (30 reference values x (clipped-only + bits 0..7) = 270 points) over the 10k test
  images, in process (``quantization_points``); median wall time over --repeat.
- circuit_agreement / circuit_stage_rms_pct_fs / circuit_seconds_per_image: a digits run trained
  with the characterized nonidealities, its first 100 test images simulated at transistor level
  (``aanntwin validate-circuit``): images whose class decision the circuit and the characterized
  twin share (the ideal twin's beside it), per-stage RMS error in % of the stage's full scale for
  both twins, and ngspice wall time per image (needs ngspice; skipped with a note otherwise).

Memory of the subprocess figures (``benchmarks/measure.py``, RSS sampled every 0.2 s, PSS every second, MB):
peak_rss_mb, the peak RSS of the largest process (its VmHWM); tree_rss_mb, the peak summed RSS of
the process tree (shared library pages counted once per process: the torch libraries every
spawned worker maps count several times); tree_pss_mb, the peak summed PSS of the tree
(``/proc/PID/smaps_rollup``: a page shared by n processes counts 1/n in each, so the sum is what
the tree costs the machine; 0 off Linux).

The floor pass (floor_pass_s, every figure that has one): a plain torch conv-ReLU-linear pass
over the 10k test images in 1,000-image slices plus one normal draw per input pixel (the work of
one noise point with nothing reused); floor_passes = the figure / floor_pass_s.

Run: ``python benchmarks/studies.py [--threads N] [--repeat N] [--only quant_grid]``; ``make
bench`` runs every figure (``--all``); without ``--all`` or ``--only NAME`` the long ones (LONG:
reference_experiment, workbook_mnist) are left out. Add a figure by writing ``bench_<name>(ctx) -> None`` and listing it
in ``FIGURES``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import torch  # noqa: E402
from measure import isolated_env, measured  # noqa: E402  (benchmarks/measure.py)

from aanntwin import RunConfig, load_dataset  # noqa: E402
from aanntwin.cache import CheckpointCache  # noqa: E402
from aanntwin.studies.quantization import quantization_points  # noqa: E402
from aanntwin.training import train  # noqa: E402


def emit(figure: str, value: float, unit: str, **context: object) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 6), "unit": unit, **context}))
    sys.stdout.flush()


class Context:
    """What figures share: arguments, and the MNIST data and default model, loaded lazily."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self._data = None
        self._model = None
        self.floor_s: float | None = None
        """Median seconds of the floor pass, measured once (:func:`floor_pass_s`)."""

    @property
    def data(self):
        if self._data is None:
            self._data = load_dataset("mnist", self.args.data_dir, download=False).to(self.device)
        return self._data

    @property
    def model(self):
        """The default MNIST model (trained once, then read back from the checkpoint cache)."""
        if self._model is None:
            cfg = RunConfig(dataset="mnist")
            result = train(
                cfg, self.data, device=self.device, progress=False, cache=CheckpointCache()
            )
            self._model = result.model.eval()
        return self._model

    def info(self) -> dict[str, object]:
        return {
            "threads": torch.get_num_threads(),
            "device": str(self.device),
            "torch": torch.__version__,
        }


def bench_quant_grid(ctx: Context) -> None:
    data, model = ctx.data, ctx.model
    x, y = data.x_test, data.y_test

    def once() -> tuple[float, int]:
        t0 = time.perf_counter()
        rows = quantization_points(model, x, y, "linear", zero_levels=(True,))
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        return time.perf_counter() - t0, len(rows)

    times, points = [], 0
    for _ in range(ctx.args.repeat):
        seconds, points = once()
        times.append(seconds)
    emit(
        "quant_grid_s",
        statistics.median(times),
        "s",
        points=points,
        images=len(y),
        min_s=round(min(times), 6),
        repeat=len(times),
        **ctx.info(),
    )


def bench_noise_grid(ctx: Context) -> None:
    from aanntwin.studies.grid import REFERENCE_TEST_LEVELS, REFERENCE_TRAIN_LEVELS
    from aanntwin.studies.noise import TEMPORAL, _noise_task, trained_model, training_config

    base = RunConfig(dataset="mnist")
    data_dir, device = ctx.args.data_dir, str(ctx.device)
    for level in REFERENCE_TRAIN_LEVELS:  # not timed: training
        trained_model(training_config(base, level, list(TEMPORAL)).to_dict(), data_dir, device)
    kind = ctx.args.noise_kind
    t0 = time.perf_counter()
    rows = [
        row
        for level in REFERENCE_TRAIN_LEVELS
        for row in _noise_task(base.to_dict(), data_dir, device, level, list(TEMPORAL), kind,
                               list(REFERENCE_TEST_LEVELS), {}, 1, 0, True, 1.0)
    ]  # fmt: skip
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - t0
    emit("noise_grid_eval_s", seconds, "s", points=len(rows), kind=kind, images=10_000,
         runs=1, common_random_numbers=True, normalized=True, **ctx.info())  # fmt: skip


def bench_clean_pass(ctx: Context) -> None:
    import torch.nn.functional as F

    model, x = ctx.model, ctx.data.x_test
    w_c, b_c = model.conv.weight.detach(), model.conv.bias.detach()
    w_l, b_l = model.linear.weight.detach(), model.linear.bias.detach()
    step = 1000 if ctx.device.type == "cpu" else len(x)

    @torch.no_grad()
    def once() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(x), step):
            h = F.relu(F.conv2d(x[i : i + step], w_c, b_c, 2, 1)).flatten(1)
            F.linear(h, w_l, b_l).argmax(1)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        return time.perf_counter() - t0

    once()
    times = [once() for _ in range(max(5, ctx.args.repeat))]
    emit("clean_pass_s", statistics.median(times), "s", images=len(x), **ctx.info())


def bench_specs(ctx: Context) -> None:
    from aanntwin.studies.normalize import apply, normalize
    from aanntwin.studies.pools import LocalPool
    from aanntwin.studies.specs import Target, derive_specs

    data = ctx.data
    model = apply(ctx.model, normalize(ctx.model, data.x_train[:10_000], 1.0))
    pool = LocalPool()  # as `aanntwin specs` runs by default (--workers auto)
    t0 = time.perf_counter()
    try:
        res = derive_specs(model, data.x_test, data.y_test, Target(0.01, 0.95, runs=20),
                           executor=pool)  # fmt: skip
    finally:
        pool.shutdown()
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - t0
    search, check, joint, bits = res.search, res.joint_check, res.joint, res.bits
    workers = min(pool.max_workers, len(res.tolerances) + len(bits))  # LocalPool's sizing
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit("spec_table_s", seconds, "s", evaluations=search.evaluations,
         ideal_accuracy=search.ideal, joint_accuracy_q=check.quantile, joint_met=check.passed,
         limits=joint, weight_bits=bits, floor_pass_s=round(floor_pass_s(ctx), 6),
         floor_passes=round(seconds / floor_pass_s(ctx)), peak_rss_mb=round(rss, 1),
         worker_processes=workers, **_specs_command(ctx), **ctx.info())  # fmt: skip


def _specs_command(ctx: Context) -> dict[str, float]:
    """The same table by the command (``aanntwin normalize``, then ``aanntwin specs``, as
    subprocesses on the model written to a folder): its wall seconds (start-up and data load
    included) and memory (see :func:`measure.measured`), as a user runs it."""
    from aanntwin import RunConfig
    from aanntwin.runs import write_model

    with tempfile.TemporaryDirectory(prefix="aanntwin-specs-") as tmp:
        write_model(f"{tmp}/run", RunConfig(dataset="mnist"), ctx.model)
        aanntwin = [sys.executable, "-m", "aanntwin"]
        data_dir = ["--data-dir", ctx.args.data_dir, "--device", str(ctx.device)]
        normalize = [*aanntwin, "normalize", f"{tmp}/run", "--out", f"{tmp}/norm",
                     "--target", "1.0", "--calibration-images", "10000", *data_dir]  # fmt: skip
        specs = [*aanntwin, "specs", f"{tmp}/norm", "--out", f"{tmp}/specs", "--target-drop",
                 "0.01", "--confidence", "0.95", "--runs", "20", *data_dir]  # fmt: skip
        env = isolated_env(tmp)
        subprocess.run(normalize, check=True, env=env, stdout=subprocess.DEVNULL)
        run = measured(specs, env, Path(tmp))
    return {
        "command_s": round(run["seconds"], 3),
        "command_peak_rss_mb": round(run["peak_rss_mb"], 1),
        "command_tree_pss_mb": round(run["tree_pss_mb"], 1),
    }


def floor_pass_s(ctx: Context) -> float:
    """Median seconds of the floor pass (module docstring) on this process's threads."""
    import torch.nn.functional as F

    from aanntwin.model import Main

    if ctx.floor_s is None:
        model = Main().to(ctx.device)
        model.reset_parameters(0)
        x = ctx.data.x_test
        w_c, b_c = model.conv.weight.detach(), model.conv.bias.detach()
        w_l, b_l = model.linear.weight.detach(), model.linear.bias.detach()
        gen = torch.Generator(device=ctx.device).manual_seed(0)
        scratch = torch.empty(x.numel(), device=ctx.device)

        @torch.no_grad()
        def once() -> float:
            t0 = time.perf_counter()
            for i in range(0, len(x), 1000):
                h = F.relu(F.conv2d(x[i : i + 1000], w_c, b_c, 2, 1)).flatten(1)
                F.linear(h, w_l, b_l).argmax(1)
            scratch.normal_(generator=gen)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            return time.perf_counter() - t0

        once()
        ctx.floor_s = statistics.median(once() for _ in range(max(5, ctx.args.repeat)))
    return ctx.floor_s


def _cores() -> int:
    from aanntwin.studies.pools import cpu_cores

    return cpu_cores()


def bench_reference_experiment(ctx: Context) -> None:
    from run import plain_train  # benchmarks/run.py: the plain torch trainer

    from aanntwin.studies.grid import REFERENCE_TEST_LEVELS, REFERENCE_TRAIN_LEVELS

    kinds = ["input", "conv_out", "relu_out", "linear_out"]
    workers = ctx.args.workers
    tasks = len(REFERENCE_TRAIN_LEVELS) * len(kinds)
    used = 1 if workers == "1" else min(_cores(), tasks) if workers == "auto" else int(workers)
    with tempfile.TemporaryDirectory(prefix="aanntwin-refexp-") as tmp:
        argv = [sys.executable, "-m", "aanntwin", "sweep", "noise", "--dataset", "mnist",
                "--data-dir", ctx.args.data_dir, "--train-levels", "reference", "--test-levels",
                "reference", "--kinds", ",".join(kinds), "--out", f"{tmp}/out", "--no-progress",
                "--device", str(ctx.device), "--workers", workers]  # fmt: skip
        run = measured(argv, isolated_env(tmp), Path(tmp))
    points = tasks * len(REFERENCE_TEST_LEVELS)
    plain_s, _, _ = plain_train(ctx.data, RunConfig(dataset="mnist").train, ctx.device)
    floor = (len(REFERENCE_TRAIN_LEVELS) * plain_s + points * floor_pass_s(ctx)) / used
    emit("reference_experiment_s", run["seconds"], "s", points=points,
         trainings=len(REFERENCE_TRAIN_LEVELS), floor_s=round(floor, 3),
         ratio=round(run["seconds"] / floor, 3), plain_train_s=round(plain_s, 3),
         floor_pass_s=round(floor_pass_s(ctx), 6), peak_rss_mb=round(run["peak_rss_mb"], 1),
         tree_rss_mb=round(run["tree_rss_mb"], 1), tree_pss_mb=round(run["tree_pss_mb"], 1),
         workers=workers, worker_processes=used,
         cores=_cores(), empty_cache=True, **ctx.info())  # fmt: skip


def bench_workbook_mnist(ctx: Context) -> None:
    repo = Path(__file__).resolve().parents[1]
    params = repo / "examples" / "workbook-mnist.yaml"
    with tempfile.TemporaryDirectory(prefix="aanntwin-workbook-") as tmp:
        argv = [sys.executable, "-m", "aanntwin", "workbook", "--params", str(params), "--out",
                f"{tmp}/reports", "--force"]  # fmt: skip
        run = measured(argv, isolated_env(tmp), repo)  # the params name ../shared: from here
        notebooks = {}
        for nb in sorted(Path(tmp, "reports").glob("*/executed/*.ipynb")):
            meta = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
            if meta.get("duration") is not None:
                notebooks[nb.stem] = round(meta["duration"], 1)
    emit("workbook_mnist_s", run["seconds"], "s", notebooks_s=notebooks,
         floor_pass_s=round(floor_pass_s(ctx), 6),
         floor_passes=round(run["seconds"] / floor_pass_s(ctx)),
         peak_rss_mb=round(run["peak_rss_mb"], 1), tree_rss_mb=round(run["tree_rss_mb"], 1),
         tree_pss_mb=round(run["tree_pss_mb"], 1), cores=_cores(), empty_cache=True,
         **ctx.info())  # fmt: skip


def bench_fidelity(ctx: Context) -> None:
    import shutil

    from aanntwin.characterization.pipeline import bench_fidelity as run

    if shutil.which("ngspice") is None:
        print(json.dumps({"figure": "fidelity_rms_pct_fs", "skipped": "ngspice not installed"}))
        return
    from aanntwin.characterization.circuits import MULTIPLIERS
    from aanntwin.characterization.pipeline import SimOptions

    for name in MULTIPLIERS:  # every shipped multiplier topology, freshly simulated
        res = run(SimOptions(multiplier=name))
        emit("fidelity_rms_pct_fs", res["fidelity_rms_pct_fs"], "% of full scale",
             multiplier=name, max_pct_fs=res["fidelity_max_pct_fs"],
             conditions=res["heldout_conditions"], fit_rms_pct_fs=res["fidelity_fit_rms_pct_fs"],
             simulate_s=res["simulate_wall_s"], fit_s=res["fit_s"])  # fmt: skip
        emit("cell_twin_rms_pct_fs", res["cell_twin_rms_pct_fs"], "% of full scale",
             multiplier=name, transfer=res["transfer"],
             parametric_fit_rms_pct_fs=res["cell_fit_rms_pct_fs"],
             tabulated_fit_rms_pct_fs=res["cell_tabulated_fit_rms_pct_fs"])  # fmt: skip


def bench_circuit(ctx: Context) -> None:
    import shutil
    import tempfile

    if shutil.which("ngspice") is None:
        print(json.dumps({"figure": "circuit_agreement", "skipped": "ngspice not installed"}))
        return
    from aanntwin.characterization.circuits import example_files
    from aanntwin.circuit_validation.run import validate
    from aanntwin.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="aanntwin-circuit-") as tmp:
        char, run = f"{tmp}/char", f"{tmp}/run"
        files = [str(p) for p in example_files()]
        assert cli(["characterize", "--csv", *files, "--out", char, "--no-plots"]) == 0
        assert cli(["train", "--nonidealities", f"{char}/nonidealities.json", "--out", run,
                    "--no-progress", "--no-cache"]) == 0  # fmt: skip
        s = validate(run, f"{tmp}/cv", images=100, characterization=char)
    n, t = s["images"], s["timing"]
    emit("circuit_agreement", s["twin"]["agreement"] / n, "fraction of images", images=n,
         ideal_twin=s["ideal"]["agreement"] / n, accuracy_circuit=s["accuracy"]["circuit"],
         accuracy_twin=s["accuracy"]["twin"], accuracy_ideal=s["accuracy"]["ideal"])  # fmt: skip
    for stage, value in s["twin"]["stage_rms_pct_fs"].items():
        emit("circuit_stage_rms_pct_fs", value, "% of full scale", stage=stage,
             full_scale=s["full_scale"][stage], ideal_twin=s["ideal"]["stage_rms_pct_fs"][stage],
             pct_of_max_output=s["twin"]["stage_rms_pct_max"][stage])  # fmt: skip
    emit("circuit_seconds_per_image", t["seconds_per_image"], "s", images=n, wall_s=t["wall_s"],
         workers=t["workers"], ngspice_s=t["ngspice_s"])  # fmt: skip


FIGURES = {
    "noise_grid": bench_noise_grid,
    "clean_pass": bench_clean_pass,
    "quant_grid": bench_quant_grid,
    "specs": bench_specs,
    "fidelity": bench_fidelity,
    "circuit": bench_circuit,
    "reference_experiment": bench_reference_experiment,
    "workbook_mnist": bench_workbook_mnist,
}
LONG = ("reference_experiment", "workbook_mnist")
"""Figures that take minutes: run with ``--only NAME`` or ``--all`` (``make bench``)."""


def main() -> int:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "data" / "mnist"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", choices=sorted(FIGURES), action="append")
    p.add_argument("--noise-kind", default="input", help="kind timed by noise_grid")
    p.add_argument("--workers", default="auto", help="reference_experiment's sweep --workers")
    p.add_argument("--all", action="store_true", help="the long figures too (LONG)")
    args = p.parse_args()
    args.data_dir = str(Path(args.data_dir).resolve())  # the subprocess figures run elsewhere
    torch.set_num_threads(args.threads)
    ctx = Context(args)
    default = [name for name in FIGURES if args.all or name not in LONG]
    for name in args.only or default:
        FIGURES[name](ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
