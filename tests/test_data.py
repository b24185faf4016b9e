import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import warnings

import numpy as np
import pytest
import torch

from aanntwin.data import batches, load_dataset
from aanntwin.errors import DataError
from aanntwin.idx import FILES, SOURCES, UnverifiedDataWarning, read_idx
from aanntwin.pixels import unit_float32
from tests.conftest import REPO


def _write_idx(path, array, gz=True):
    """An IDX file of unsigned bytes (magic 0x0000080N, big-endian dims, then the bytes)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    dims = b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    raw = bytes([0, 0, 8, a.ndim]) + dims + a.tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)


def _write_set(folder, n=(20, 10), shape=(28, 28), labels=None):
    """Four synthetic IDX files: blank images marked with their index, labels cycling 0..9 (or
    ``labels(n)``)."""
    folder.mkdir()
    for prefix, count in zip(("train", "t10k"), n, strict=True):
        images = np.zeros((count, *shape), np.uint8)
        images.reshape(count, -1)[:, 0] = np.arange(count) % 256
        y = np.arange(count) % 10 if labels is None else labels(count)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return folder


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """MNIST-shaped files (60,000/10,000 28x28 images, labels 0..9) that are not MNIST."""
    return _write_set(tmp_path_factory.mktemp("fake") / "mnist-shaped", n=(60_000, 10_000))


def test_digits_is_scaled_and_split_stratified_and_fixed(digits):
    assert digits.x_train.shape[1:] == (1, 8, 8) and digits.x_train.dtype == torch.float32
    assert digits.x_train.min().item() == 0.0 and digits.x_train.max().item() == 1.0
    assert len(digits.y_train) + len(digits.y_test) == 1797
    counts = torch.bincount(digits.y_test, minlength=10).float()
    assert counts.min() / counts.max() > 0.9  # stratified
    assert load_dataset("digits").fingerprint == digits.fingerprint


def test_mnist_from_the_shared_folder(mnist):
    assert mnist.x_train.shape == (60_000, 1, 28, 28)
    assert mnist.x_test.shape == (10_000, 1, 28, 28)
    assert mnist.y_train.dtype == torch.int64 and mnist.y_train.max().item() == 9
    assert mnist.x_test.max().item() == 1.0
    assert mnist.verified  # re-compressed files, verified by their decompressed content


def _copy(mnist_dir, dst, raw=False):
    dst.mkdir()
    for stem in FILES.values():
        src = mnist_dir / f"{stem}.gz"
        if raw:
            (dst / stem).write_bytes(gzip.decompress(src.read_bytes()))
        else:
            shutil.copy(src, dst / f"{stem}.gz")
    return dst


def test_raw_idx_files_load_the_same(mnist_dir, mnist, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedDataWarning)
        ds = load_dataset("mnist", _copy(mnist_dir, tmp_path / "raw", raw=True), download=False)
    assert torch.equal(ds.y_test, mnist.y_test)
    assert ds.fingerprint == mnist.fingerprint and ds.verified


def test_mnist_files_under_the_fashion_mnist_name_are_refused(mnist_dir, tmp_path):
    folder = tmp_path / "fashion"
    folder.mkdir()
    for stem in FILES.values():  # the same torchvision file names for both datasets
        (folder / f"{stem}.gz").symlink_to(mnist_dir / f"{stem}.gz")
    with pytest.raises(DataError, match=r"these files are MNIST, not Fashion-MNIST") as info:
        load_dataset("fashion-mnist", folder, download=False)
    assert str(folder) in str(info.value) and "--dataset mnist" in str(info.value)


def test_a_file_under_another_files_name_is_refused(mnist_dir, tmp_path):
    folder = tmp_path / "swapped"
    folder.mkdir()
    for stem in FILES.values():
        source = "t10k-labels-idx1-ubyte" if stem == "train-labels-idx1-ubyte" else stem
        (folder / f"{stem}.gz").symlink_to(mnist_dir / f"{source}.gz")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: this is MNIST's t10k-labels"):
        load_dataset("mnist", folder, download=False)


def test_files_with_another_names_served_digest_are_refused(full_size, monkeypatch):
    served = {
        s: hashlib.sha256((full_size / f"{s}.gz").read_bytes()).hexdigest() for s in FILES.values()
    }
    monkeypatch.setitem(SOURCES["mnist"], "sha256", served)  # as if these were the served files
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedDataWarning)
        assert load_dataset("mnist", full_size, download=False).verified
    with pytest.raises(DataError, match=r"these files are MNIST, not Fashion-MNIST"):
        load_dataset("fashion-mnist", full_size, download=False)


def test_unknown_content_loads_with_one_warning_and_verified_false(full_size):
    with pytest.warns(UnverifiedDataWarning) as record:
        ds = load_dataset("fashion-mnist", full_size, download=False)
    assert len([w for w in record if w.category is UnverifiedDataWarning]) == 1
    message = str(record[0].message)
    assert f"content of {full_size} is unverified" in message and "Fashion-MNIST" in message
    assert ds.x_train.shape == (60_000, 1, 28, 28) and not ds.verified
    assert not ds.subset(10, 10).verified and not ds.to("cpu").verified


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("mnist", {"shape": (14, 14)}, r"train-images-idx3-ubyte.gz: image size 14x14; mnist requires 28x28"),
        ("mnist", {"shape": (28, 28, 3)}, r"train-images-idx3-ubyte.gz: image shape \(20, 28, 28, 3\); mnist requires N x 28 x 28 \(1 channel\)"),
        ("fashion-mnist", {"labels": lambda n: np.arange(n) % 11}, r"train-labels-idx1-ubyte.gz: label 10; fashion-mnist requires labels 0..9"),
        ("mnist", {"labels": lambda n: np.arange(n) % 5}, r"train-labels-idx1-ubyte.gz: class count 5; mnist requires all 10 classes"),
        ("mnist", {}, r"train-images-idx3-ubyte.gz: train count 20; mnist requires 60000"),
        ("fashion-mnist", {"n": (60_000, 20)}, r"t10k-images-idx3-ubyte.gz: test count 20; fashion-mnist requires 10000"),
    ],
)  # fmt: skip
def test_files_unlike_what_the_name_promises_are_refused(tmp_path, name, kwargs, message):
    folder = _write_set(tmp_path / "wrong", **kwargs)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(name, folder, download=False)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_corrupt_files_name_the_file(mnist_dir, tmp_path):
    folder = _copy(mnist_dir, tmp_path / "m", raw=True)
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: truncated or corrupt"):
        load_dataset("mnist", folder, download=False)
    labels.write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: not an IDX file"):
        read_idx(labels)
    gz = tmp_path / "bad.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"bad.gz: cannot read IDX file"):
        read_idx(gz)


def test_checksum_file_is_enforced(mnist_dir, tmp_path):
    folder = _copy(mnist_dir, tmp_path / "m")
    shutil.copy(mnist_dir / "SHA256SUMS", folder / "SHA256SUMS")
    load_dataset("mnist", folder, download=False)  # intact: fine
    data = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    tampered = data[:-1] + bytes([(data[-1] + 1) % 10])
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(tampered))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256 does not match"):
        load_dataset("mnist", folder, download=False)


def test_missing_files_offline_point_to_the_folder_option(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"--data-dir FOLDER \(or set AANNTWIN_DATA_DIR\)"):
        load_dataset("fashion-mnist", tmp_path / "empty")
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path / "empty", download=False)
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    class Fake:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return gzip.compress(b"tampered")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Fake())
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        load_dataset("mnist", tmp_path / "dl")
    assert not list((tmp_path / "dl").glob("*.gz"))  # nothing unverified is kept


def test_data_dir_env_is_used(mnist_dir, monkeypatch):
    monkeypatch.setenv("AANNTWIN_DATA_DIR", str(mnist_dir))
    assert load_dataset("mnist", download=False).source == str(mnist_dir)


def test_batches_are_a_seeded_permutation():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = torch.cat(list(batches(103, 10, g())))
    b = torch.cat(list(batches(103, 10, g())))
    assert torch.equal(a, b)
    assert sorted(a.tolist()) == list(range(103))
    assert not torch.equal(a, torch.arange(103))
    assert [len(i) for i in batches(25, 10)] == [10, 10, 5]
    assert np.array_equal(torch.cat(list(batches(25, 10))).numpy(), np.arange(25))


def _reference_images(path):
    """Straightforward decoding of a gzipped IDX image file: the payload after the 16-byte header
    as uint8, then float32 / 255 (what every loader must reproduce bit for bit)."""
    raw = gzip.decompress(path.read_bytes())
    a = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return a.astype(np.float32) / np.float32(255.0)


def test_idx_images_equal_the_plain_decoding_bit_for_bit(full_size):
    with pytest.warns(UnverifiedDataWarning):
        ds = load_dataset("fashion-mnist", full_size, download=False)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = getattr(ds, f"x_{split}")
        ref = _reference_images(full_size / f"{prefix}-images-idx3-ubyte.gz")
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert np.array_equal(x.numpy().view(np.uint32), ref.view(np.uint32))  # every bit
        labels = gzip.decompress((full_size / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())
        assert torch.equal(getattr(ds, f"y_{split}"), torch.tensor(list(labels[8:])))
    assert len(np.unique(ds.x_train.numpy())) == 256  # every pixel value was compared


def test_unit_float32_rounds_as_float32_division_by_255():
    v = np.arange(256, dtype=np.uint8)
    want = (v.astype(np.float32) / np.float32(255.0)).view(np.uint32)
    assert np.array_equal(unit_float32(v).view(np.uint32), want)
    records = np.tile(v, (4, 2))[:, 1:]  # strided, as CIFAR's pixels after the label byte
    assert np.array_equal(unit_float32(records).view(np.uint32), np.tile(want, (4, 2))[:, 1:])
    assert unit_float32(v.reshape(16, 16)).dtype == np.float32


PEAK_SCRIPT = """
import json, sys, warnings
import torch
from aanntwin.data import load_dataset
def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
before = status_mb("VmRSS")
warnings.simplefilter("ignore")
ds = load_dataset("fashion-mnist", sys.argv[1], download=False)
tensors = sum(t.numel() * t.element_size() for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
print(json.dumps({"growth_mb": status_mb("VmHWM") - before, "tensors_mb": tensors / 2**20}))
"""
"""VmHWM (this process image's peak RSS), not ru_maxrss: a child spawned with vfork inherits the
parent's peak in ru_maxrss, here pytest's after it loaded these same 60,000 images."""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ru_maxrss (kB)")
def test_loading_peaks_close_to_the_final_tensors(full_size):
    """A study's worker loads the dataset once: its transient copies (uint8 bytes, float
    temporaries) count against the memory budget. 60,000 + 10,000 images: 219 MB of float32;
    a float temporary or a second float copy alone would push the peak growth past 1.6x."""
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(full_size)], check=True,
                         capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    m = json.loads(out.stdout)
    assert m["tensors_mb"] > 200
    assert m["growth_mb"] < 1.6 * m["tensors_mb"], m


def test_a_data_folder_that_is_not_read_is_named_in_a_warning(tmp_path):
    """Regression: ``--data-dir`` with the bundled digits (or a .npz file) was silently ignored,
    though the user may have meant another dataset."""
    with pytest.warns(UserWarning, match=f"data folder {tmp_path} is not used: the digits"):
        load_dataset("digits", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("digits")  # no folder given: nothing to say
