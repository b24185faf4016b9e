"""Study benchmarks: one JSON object per line ({"figure", "value", "unit", ...context}).

Figures (MNIST from --data-dir, default ../shared/data/mnist beside the checkout; the default
model is trained once through the checkpoint cache, later runs read it back):
- quant_grid_s: the quantization study's full reference grid for the final linear layer with one
  zero mode (30 reference values x (clipped-only + bits 0..7) = 270 points) over the 10k test
  images, in process (``quantization_points``); median wall time over --repeat.

Run: ``python benchmarks/studies.py [--threads N] [--repeat N] [--only quant_grid]``. Add a
figure by writing ``bench_<name>(ctx) -> None`` and listing it in ``FIGURES``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import torch  # noqa: E402

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


FIGURES = {"quant_grid": bench_quant_grid}


def main() -> int:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(repo.parent / "shared" / "data" / "mnist"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", choices=sorted(FIGURES), action="append")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ctx = Context(args)
    for name in args.only or list(FIGURES):
        FIGURES[name](ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
