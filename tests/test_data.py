import gzip
import shutil
import urllib.request

import numpy as np
import pytest
import torch

from aanntwin.data import FILES, batches, load_dataset, read_idx
from aanntwin.errors import DataError


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
    ds = load_dataset("mnist", _copy(mnist_dir, tmp_path / "raw", raw=True), download=False)
    assert torch.equal(ds.y_test, mnist.y_test)
    assert ds.fingerprint == mnist.fingerprint


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
