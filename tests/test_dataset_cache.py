"""The decoded-dataset cache: mapped datasets equal the loaded ones bit for bit, entries are
written once and atomically, in-place writes stay private, and a study process holding MNIST
through ``cached_dataset`` keeps it in shared page-cache pages, not anonymous memory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aanntwin.dataset_cache as dataset_cache
from aanntwin.data import Dataset
from aanntwin.dataset_cache import MANIFEST, MIN_BYTES, TENSORS, entry_key, load_mapped, mapped
from aanntwin.idx import UnverifiedDataWarning
from aanntwin.pixels import decode_unit, unit_codes
from tests.synthetic_data import shapes_npz, write_cifar


def synthetic(n_train: int = 4500, n_test: int = 500, seed: int = 0) -> Dataset:
    """A random dataset of 1x32x32 float32 images just above :data:`MIN_BYTES` (20 MB)."""
    g = torch.Generator().manual_seed(seed)
    return Dataset(
        "synthetic",
        torch.rand(n_train, 1, 32, 32, generator=g),
        torch.randint(0, 10, (n_train,), generator=g),
        torch.rand(n_test, 1, 32, 32, generator=g),
        torch.randint(0, 10, (n_test,), generator=g),
        10,
        f"synthetic-{seed}-{n_train}-{n_test}",
        "test",
        verified=False,
    )


def assert_same(a: Dataset, b: Dataset) -> None:
    """Every field equal; tensors bit for bit (dtype, shape and bytes). The pixel codes a mapped
    dataset adds are checked apart (:func:`test_8_bit_training_images_are_mapped_as_codes_too`)."""
    for field in dataclasses.fields(Dataset):
        if field.name == "train_codes":
            continue
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape, field.name
            assert torch.equal(x.view(-1).view(torch.uint8), y.view(-1).view(torch.uint8))
        else:
            assert x == y, field.name


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_a_mapped_dataset_equals_the_loaded_one_and_is_written_once(tmp_path):
    ds = synthetic()
    m = mapped(ds, tmp_path)
    assert_same(m, ds)
    assert m.x_train.data_ptr() != ds.x_train.data_ptr()  # its own (mapped) storage
    folder = tmp_path / entry_key(ds)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["tensors"]["x_train"] == {
        "dtype": "float32", "shape": [4500, 1, 32, 32], "bytes": 4500 * 32 * 32 * 4,
        "file": "x_train",
    }  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    before = mtimes(folder)
    again = mapped(ds, tmp_path)
    assert mtimes(folder) == before  # the existing entry is mapped, not rewritten
    assert_same(again, ds)


def test_the_environment_variable_names_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("AANNTWIN_DATASET_CACHE", str(tmp_path / "ds"))
    ds = synthetic(seed=1)
    mapped(ds)
    assert (tmp_path / "ds" / entry_key(ds) / MANIFEST).is_file()


def test_other_content_or_shape_is_another_entry():
    a, b = synthetic(seed=0), synthetic(seed=2)
    assert entry_key(a) != entry_key(b)
    assert entry_key(a) != entry_key(dataclasses.replace(a, x_train=a.x_train.double()))
    assert entry_key(a).startswith("synthetic-")


def test_an_in_place_write_stays_private(tmp_path):
    ds = synthetic()
    m = mapped(ds, tmp_path)
    m.x_train[0] += 1.0  # the user's own copy of this page, never the file
    m.y_train.zero_()
    file = tmp_path / entry_key(ds) / "x_train"
    on_disk = np.fromfile(file, dtype=np.float32).reshape(ds.x_train.shape)
    assert np.array_equal(on_disk, ds.x_train.numpy())
    assert_same(mapped(ds, tmp_path), ds)  # another mapping sees the file as written
    code = (
        "import sys, torch; from aanntwin.dataset_cache import mapped; "
        "sys.path.insert(0, sys.argv[1]); from test_dataset_cache import synthetic; "
        "ds = synthetic(); m = mapped(ds, sys.argv[2]); "
        "assert torch.equal(m.x_train, ds.x_train) and torch.equal(m.y_train, ds.y_train)"
    )
    here = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", code, here, str(tmp_path)], check=True)


def test_a_half_written_entry_is_rewritten_not_trusted(tmp_path):
    ds = synthetic()
    folder = tmp_path / entry_key(ds)
    folder.mkdir()
    (folder / "x_train").write_bytes(b"\0" * 100)  # a crash before the manifest
    assert_same(mapped(ds, tmp_path), ds)
    assert (folder / MANIFEST).is_file()
    assert (folder / "x_train").stat().st_size == ds.x_train.numel() * 4
    # a manifest whose file is short (damaged later) is not trusted either
    with open(folder / "x_test", "r+b") as fh:
        fh.truncate(10)
    assert_same(mapped(ds, tmp_path), ds)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_unwritable_cache_keeps_the_dataset_in_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # unwritable even for root: a file in the path
    ds = synthetic()
    with pytest.warns(UserWarning, match=r"dataset cache .*file.*keeping it in memory"):
        m = mapped(ds, blocker / "cache")
    assert m is ds


def test_small_datasets_stay_in_memory(tmp_path, digits):
    assert sum(getattr(digits, f).nbytes for f in TENSORS) < MIN_BYTES
    assert mapped(digits, tmp_path) is digits
    assert not any(tmp_path.iterdir())


def test_real_mnist_maps_bit_for_bit(mnist):
    m = mapped(mnist)
    assert_same(m, mnist)
    idx = torch.randperm(len(mnist.y_train), generator=torch.Generator().manual_seed(0))[:500]
    assert torch.equal(m.train_images(idx).view(torch.int32), mnist.x_train[idx].view(torch.int32))


def eight_bit(ds: Dataset) -> Dataset:
    """``ds`` with every image value rounded to an 8-bit pixel code / 255 (float32)."""
    pixels = lambda x: decode_unit((x * 255).round().to(torch.uint8))  # noqa: E731
    return dataclasses.replace(ds, x_train=pixels(ds.x_train), x_test=pixels(ds.x_test))


def test_8_bit_training_images_are_mapped_as_codes_too(tmp_path):
    """Training gathers its batches from uint8 codes (a quarter of the bytes resident while
    models train); they must give the float32 images bit for bit, and exist only where the
    images are made of codes."""
    ds = eight_bit(synthetic())
    m = mapped(ds, tmp_path)
    assert m.train_codes is not None and m.train_codes.dtype == torch.uint8
    assert torch.equal(decode_unit(m.train_codes).view(torch.int32), ds.x_train.view(torch.int32))
    manifest = json.loads((tmp_path / entry_key(ds) / MANIFEST).read_text())
    assert manifest["tensors"]["train_codes"]["bytes"] == ds.x_train.numel()
    assert mapped(ds, tmp_path).train_codes is not None  # read back from the entry
    # not 8-bit: uniform floats, and one value a hair off a code
    assert mapped(synthetic(seed=1), tmp_path).train_codes is None
    off = ds.x_train.clone()
    off.view(-1)[12345] = torch.nextafter(off.view(-1)[12345], torch.tensor(2.0))
    assert (
        mapped(dataclasses.replace(ds, x_train=off, fingerprint="off"), tmp_path).train_codes
        is None
    )


def test_an_entry_missing_its_codes_file_is_rewritten(tmp_path):
    ds = eight_bit(synthetic())
    mapped(ds, tmp_path)
    (tmp_path / entry_key(ds) / "train_codes").write_bytes(b"short")
    again = mapped(ds, tmp_path)
    assert torch.equal(again.train_codes, mapped(ds, tmp_path / "other").train_codes)


def test_codes_follow_the_images_through_to_and_subset():
    ds = eight_bit(synthetic())
    coded = dataclasses.replace(ds, train_codes=unit_codes(ds.x_train))
    assert coded.to("cpu").train_codes is coded.train_codes  # the same images: kept
    assert coded.to("cpu", torch.float64).train_codes is None  # cast: the codes would lie
    sub = coded.subset(100, 10)
    assert torch.equal(sub.train_codes, coded.train_codes[:100])


# Run in a fresh interpreter: anonymous memory (kB, /proc/self/smaps_rollup) before and after
# holding MNIST through cached_dataset, then the tensors' SHA-256 digests.
_MEMORY = """
import hashlib, json, sys
from aanntwin.studies.common import cached_dataset

def kb(path, key):
    with open(path) as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))

before, peak_before = kb("/proc/self/smaps_rollup", "Anonymous:"), kb("/proc/self/status", "VmHWM:")
ds = cached_dataset("mnist", sys.argv[1])
peak = kb("/proc/self/status", "VmHWM:") - peak_before
touched = float(ds.x_train.sum()) + float(ds.x_test.sum())  # every page read
grown = kb("/proc/self/smaps_rollup", "Anonymous:") - before
digests = {f: hashlib.sha256(getattr(ds, f).numpy()).hexdigest()
           for f in ("x_train", "y_train", "x_test", "y_test")}
print(json.dumps({"grown_kb": grown, "peak_kb": peak, "digests": digests}))
"""


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_a_study_process_holds_mnist_in_shared_pages(mnist, mnist_dir):
    """Each process holds MNIST in shared pages; after the first, one maps it without decoding:
    no transient copy (a worker's start was +280 MB of peak memory, 0.7 s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _MEMORY, str(mnist_dir)],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
        )
        for _ in range(2)
    ]  # fmt: skip
    expected = {f: hashlib.sha256(getattr(mnist, f).numpy()).hexdigest() for f in TENSORS}
    size_mb = sum(getattr(mnist, f).nbytes for f in TENSORS) / 2**20  # about 210 MiB
    for result in results:
        assert result["digests"] == expected
        grown_mb = result["grown_kb"] / 1024
        assert grown_mb < 60, f"anonymous memory grew {grown_mb:.0f} MiB for {size_mb:.0f} MiB"
    peak_mb = results[1]["peak_kb"] / 1024
    assert peak_mb < 40, f"mapping MNIST again raised the peak by {peak_mb:.0f} MiB"


def test_a_killed_writers_leftovers_are_removed(tmp_path):
    ds = synthetic()
    key = entry_key(ds)
    stale, fresh = tmp_path / f".{key}.tmp-old", tmp_path / f".{key}.tmp-new"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "x_train").write_bytes(b"\0" * 10)
    os.utime(stale, (0, 0))  # long ago
    mapped(ds, tmp_path)
    assert not stale.exists() and fresh.exists()  # a fresh one may be another process's


def test_processes_starting_together_share_one_whole_entry(tmp_path):
    code = (
        "import sys, warnings; from aanntwin.dataset_cache import mapped; "
        "sys.path.insert(0, sys.argv[1]); from test_dataset_cache import synthetic, assert_same; "
        "ds = synthetic(); warnings.filterwarnings('error', 'dataset cache'); "
        "m = mapped(ds, sys.argv[2]); assert m is not ds; assert_same(m, ds)"
    )  # an error, not a warning, if a process fell back to memory
    argv = [sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)]
    procs = [subprocess.Popen(argv) for _ in range(3)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == [entry_key(synthetic())]


def _sum_and_first(x: torch.Tensor) -> tuple[float, list[float]]:
    return float(x.double().sum()), x.reshape(-1)[:5].tolist()


def test_mapped_tensors_can_be_sent_to_worker_processes(tmp_path):
    """Regression: tensors mapped with torch.from_file kept no file descriptor, and torch's
    pickling for a worker process (shared by descriptor) failed with EBADF: ``aanntwin specs``
    on MNIST stopped with "cannot write OUT (Bad file descriptor)"."""
    from aanntwin.studies.pools import process_pool

    ds = synthetic()
    m = mapped(ds, tmp_path)
    with process_pool(1, threads=1) as pool:
        got = pool.submit(_sum_and_first, m.x_test[:200]).result()
    assert got == _sum_and_first(ds.x_test[:200])
    assert_same(m, ds)  # sending it changed nothing the parent sees


def test_training_on_the_codes_gives_the_same_model():
    """``train`` gathers batches through ``train_images``: with the codes it must train exactly
    the model it trains on the float32 images (same loss history, same weights)."""
    from aanntwin.config import RunConfig, TrainParams
    from aanntwin.training import train

    ds = eight_bit(synthetic(n_train=300, n_test=50))
    coded = dataclasses.replace(ds, train_codes=unit_codes(ds.x_train))
    cfg = RunConfig(train=TrainParams(epochs=2, batch_size=32, seed=3))
    a = train(cfg, ds, progress=False, eval_each_epoch=False)
    b = train(cfg, coded, progress=False, eval_each_epoch=False)
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    for (name, p), q in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name


@pytest.fixture
def counted_loads(monkeypatch):
    """Every dataset mapped however small; the number of real loads (decodes) so far."""
    monkeypatch.setattr(dataset_cache, "MIN_BYTES", 0)
    calls = []
    real = dataset_cache.load_dataset
    monkeypatch.setattr(
        dataset_cache, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    return calls


def test_the_same_files_are_mapped_again_without_decoding(tmp_path, counted_loads):
    """A study's workers and every notebook kernel decoded MNIST again (0.7 s and a transient
    240 MB each) although its entry was there: the files' stamps now find the entry."""
    npz = shapes_npz(tmp_path / "own.npz")
    first = load_mapped(str(npz), root=tmp_path / "c")
    again = load_mapped(str(npz), root=tmp_path / "c")
    assert len(counted_loads) == 1
    assert_same(again, first)
    assert torch.equal(again.train_codes, first.train_codes)
    shapes_npz(npz, seed=1)  # other content: decoded again, and it is the new one
    changed = load_mapped(str(npz), root=tmp_path / "c")
    assert len(counted_loads) == 2 and changed.fingerprint != first.fingerprint
    assert_same(changed, load_mapped(str(npz), root=tmp_path / "elsewhere"))


def test_the_warnings_of_a_load_are_given_on_every_load(tmp_path, counted_loads):
    folder = write_cifar(tmp_path / "cifar")  # no SHA256SUMS: unverified
    with pytest.warns(UnverifiedDataWarning, match="unverified") as first:
        a = load_mapped("cifar10", folder, root=tmp_path / "c")
    with pytest.warns(UnverifiedDataWarning, match="unverified") as second:
        b = load_mapped("cifar10", folder, root=tmp_path / "c")
    assert len(counted_loads) == 1 and not b.verified
    assert [str(w.message) for w in second] == [str(w.message) for w in first]
    assert_same(b, a)


def test_a_damaged_record_or_entry_means_decoding_again(tmp_path, counted_loads):
    npz = shapes_npz(tmp_path / "own.npz")
    root = tmp_path / "c"
    expected = load_mapped(str(npz), root=tmp_path / "ref")
    load_mapped(str(npz), root=root)  # nothing keeps it mapped: its file is damaged below
    (record,) = (root / dataset_cache.SOURCES).glob("*.json")
    record.write_text("{not json")
    assert_same(load_mapped(str(npz), root=root), expected)
    (root / entry_key(expected) / "x_test").write_bytes(b"")
    assert_same(load_mapped(str(npz), root=root), expected)
    assert len(counted_loads) == 4
    assert_same(load_mapped(str(npz), root=root), expected)
    assert len(counted_loads) == 4  # whole again: found


def test_an_entry_written_to_at_its_size_is_decoded_again(tmp_path, counted_loads):
    """Only the sizes were checked: labels shifted in place in the cache were trusted (a 0.9 %
    accuracy printed with exit 0), random bytes were a traceback."""
    npz = shapes_npz(tmp_path / "own.npz")
    root = tmp_path / "c"
    expected = load_mapped(str(npz), root=tmp_path / "ref")
    load_mapped(str(npz), root=root)
    path = root / entry_key(expected) / "y_test"
    y = np.fromfile(path, np.int64)
    ((y + 1) % 4).tofile(path)  # same size, other labels
    assert_same(load_mapped(str(npz), root=root), expected)
    assert len(counted_loads) == 3  # the entry was decoded again, not trusted


@pytest.mark.filterwarnings("ignore::aanntwin.idx.UnverifiedDataWarning")
def test_each_copy_of_the_same_files_is_named_as_itself(tmp_path, counted_loads):
    """The entry is shared by content (a registered name: the same key for any folder): a
    second folder of the same files was reported as the first one (an error named the folder
    the user had not given)."""
    import shutil

    first = write_cifar(tmp_path / "a")
    shutil.copytree(first, tmp_path / "b")
    root = tmp_path / "c"
    a = load_mapped("cifar10", first, root=root)
    for _ in range(2):  # decoded (mapping a's entry), then found by its record
        b = load_mapped("cifar10", tmp_path / "b", root=root)
        assert b.fingerprint == a.fingerprint and b.source != a.source
        assert str(tmp_path / "b") in b.source and str(tmp_path / "a") not in b.source


_TOGETHER = """
import sys, time
import aanntwin.dataset_cache as dc
dc.MIN_BYTES = 0
real = dc.load_dataset
def slow(*a, **k):  # a decode long enough for the others to arrive meanwhile
    print("decoded", flush=True)
    time.sleep(1.0)
    return real(*a, **k)
dc.load_dataset = slow
ds = dc.load_mapped(sys.argv[1], root=sys.argv[2])
print(ds.fingerprint, ds.train_codes is not None)
"""


def test_processes_starting_together_decode_once(tmp_path):
    """A sweep's workers start together: each decoded MNIST (2 x 280 MB at once, the reference
    experiment's peak); one decodes now, the others wait and map its entry."""
    npz = shapes_npz(tmp_path / "own.npz")
    argv = [sys.executable, "-c", _TOGETHER, str(npz), str(tmp_path / "c")]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate()[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sum(out.count("decoded") for out in outs) == 1
    assert len({tuple(out[-2:]) for out in outs}) == 1 and outs[0][-1] == "True"
