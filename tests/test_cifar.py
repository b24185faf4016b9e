"""CIFAR-10, binary version: synthetic batch files in the exact format (no real files here),
the SHA-256-checked download (a local fake archive), the refused python version, 3 channels
through training and the hardware counts."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from aanntwin import cifar
from aanntwin.cli import main
from aanntwin.config import ModelParams, RunConfig
from aanntwin.data import load_dataset
from aanntwin.errors import DataError
from aanntwin.idx import UnverifiedDataWarning
from aanntwin.registry import info
from aanntwin.runs import run_geometry
from tests.synthetic_data import CIFAR_FILES, cifar_records, write_cifar


def _load(folder, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedDataWarning)
        return load_dataset("cifar10", folder, **kw)


def test_the_registry_promises_3x32x32_and_10_classes():
    assert (info("cifar10").in_shape, info("cifar10").n_classes) == ((3, 32, 32), 10)
    assert RunConfig(dataset="cifar10").dataset == "cifar10"


@pytest.mark.parametrize("sub", [None, "cifar-10-batches-bin"])
def test_reads_the_batch_files_from_the_folder_or_its_subfolder(tmp_path, sub):
    write_cifar(tmp_path, n=20, sub=sub)
    with pytest.warns(UnverifiedDataWarning, match="no SHA256SUMS"):
        d = load_dataset("cifar10", tmp_path, download=False)
    assert tuple(d.x_train.shape) == (100, 3, 32, 32) and tuple(d.x_test.shape) == (20, 3, 32, 32)
    assert (
        d.x_train.dtype.is_floating_point
        and 0 <= float(d.x_train.min()) <= float(d.x_train.max()) <= 1
    )
    assert d.y_train.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert d.n_classes == 10 and d.verified is False and d.in_shape == (3, 32, 32)


def test_the_record_layout_is_label_then_r_g_b_planes_row_major(tmp_path):
    rec = np.zeros((10, cifar.RECORD), np.uint8)
    rec[:, 0] = np.arange(10)
    rec[3, 1 + 0 * 1024 + 0 * 32 + 5] = 255  # R plane, row 0, column 5
    rec[3, 1 + 1 * 1024 + 2 * 32 + 0] = 51  # G plane, row 2, column 0
    rec[3, 1 + 2 * 1024 + 31 * 32 + 31] = 102  # B plane, last pixel
    (tmp_path / "x.bin").write_bytes(rec.tobytes())
    x, y, _ = cifar.read_batch(tmp_path / "x.bin")
    assert y.tolist() == list(range(10))
    assert x.shape == (10, 3, 32, 32)
    assert (x[3, 0, 0, 5], x[3, 1, 2, 0], x[3, 2, 31, 31]) == (255, 51, 102)
    assert int(x.sum()) == 255 + 51 + 102


def test_a_truncated_file_names_itself_its_size_and_what_was_expected(tmp_path):
    write_cifar(tmp_path, sub=None)
    bad = tmp_path / "data_batch_3.bin"
    bad.write_bytes(bad.read_bytes()[:-7])
    with pytest.raises(DataError) as err:
        _load(tmp_path)
    msg = str(err.value)
    assert str(bad) in msg and f"{20 * 3073 - 7} bytes" in msg and "3073-byte records" in msg
    assert "30730000 bytes" in msg


def test_a_label_above_9_is_refused(tmp_path):
    write_cifar(tmp_path, sub=None)
    raw = bytearray((tmp_path / "test_batch.bin").read_bytes())
    raw[3 * 3073] = 10
    (tmp_path / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(
        DataError, match=r"test_batch.bin: record 3 has label 10; CIFAR-10 labels are 0..9"
    ):
        _load(tmp_path)


def test_training_files_missing_a_class_are_refused(tmp_path):
    out = tmp_path
    for name in CIFAR_FILES:
        rec = np.frombuffer(cifar_records(20, 0), np.uint8).reshape(20, -1).copy()
        rec[:, 0] = rec[:, 0] % 9  # never class 9
        (out / name).write_bytes(rec.tobytes())
    with pytest.raises(DataError, match="9 of the 10 classes"):
        _load(tmp_path)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: (p / "data_batch_1").write_bytes(b"\x80pickle"),
        lambda p: (p / "cifar-10-batches-py").mkdir(),
        lambda p: (p / "cifar-10-python.tar.gz").write_bytes(b"x"),
    ],
)
def test_the_pickled_python_version_is_refused(tmp_path, make):
    make(tmp_path)
    with pytest.raises(DataError, match='"python version".*never unpickles.*binary version'):
        _load(tmp_path)


def _archive(tmp_path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    path = tmp_path / "src" / cifar.ARCHIVE
    path.parent.mkdir(exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        for name in links:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(ti)
    return path


def _serve(monkeypatch, path: Path, sha256: str | None = None) -> None:
    """Serve ``path`` as the download (file:// URL); the archive's size and (unless given)
    SHA-256 become the expected ones, and its 20 records per file the real dataset's."""
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", 20)
    monkeypatch.setattr(cifar, "URL", path.as_uri())
    monkeypatch.setattr(cifar, "ARCHIVE_SIZE", path.stat().st_size)
    monkeypatch.setattr(
        cifar, "ARCHIVE_SHA256", sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
    )


def _members(n: int = 20) -> dict[str, bytes]:
    return {f"{cifar.SUBDIR}/{name}": cifar_records(n, i) for i, name in enumerate(CIFAR_FILES)}


def test_the_download_is_verified_extracted_and_then_loads_as_verified(tmp_path, monkeypatch):
    members = {**_members(), f"{cifar.SUBDIR}/readme.html": b"<html>"}
    _serve(monkeypatch, _archive(tmp_path, members))
    monkeypatch.setenv("AANNTWIN_DATA_DIR", str(tmp_path / "data"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedDataWarning)
        d = load_dataset("cifar10")  # no folder given: downloads
        again = load_dataset("cifar10")  # now from the folder, checked against its SHA256SUMS
    out = tmp_path / "data" / cifar.SUBDIR
    assert sorted(p.name for p in out.iterdir()) == sorted([*CIFAR_FILES, "SHA256SUMS"])
    assert d.verified and again.verified and d.fingerprint == again.fingerprint
    assert tuple(d.x_train.shape) == (100, 3, 32, 32)
    (out / "test_batch.bin").write_bytes(cifar_records(20, 99))  # corrupted after the check
    with pytest.raises(DataError, match="test_batch.bin: SHA-256 does not match"):
        load_dataset("cifar10")


def test_a_download_with_the_wrong_sha256_is_refused_and_nothing_extracted(tmp_path, monkeypatch):
    _serve(monkeypatch, _archive(tmp_path, _members()), sha256="0" * 64)
    with pytest.raises(DataError, match="SHA-256 .* is not the CIFAR-10 binary archive's"):
        load_dataset("cifar10", tmp_path / "data")
    assert not any((tmp_path / "data").rglob("*.bin"))
    assert not (tmp_path / "data" / cifar.ARCHIVE).exists()


def test_a_download_of_the_wrong_size_is_refused(tmp_path, monkeypatch):
    _serve(monkeypatch, _archive(tmp_path, _members()))
    monkeypatch.setattr(cifar, "ARCHIVE_SIZE", 170_052_171)
    with pytest.raises(DataError, match="bytes; the CIFAR-10 binary archive has 170052171"):
        load_dataset("cifar10", tmp_path / "data")


@pytest.mark.parametrize("bad", ["link", "dotdot", "absolute"])
def test_archives_with_links_or_escaping_paths_are_refused(tmp_path, monkeypatch, bad):
    members = _members()
    links: tuple[str, ...] = ()
    if bad == "link":
        del members[f"{cifar.SUBDIR}/test_batch.bin"]
        links = (f"{cifar.SUBDIR}/test_batch.bin",)
    elif bad == "dotdot":
        members["cifar-10-batches-bin/../../evil.bin"] = b"x"
    else:
        members["/tmp/evil.bin"] = b"x"
    _serve(monkeypatch, _archive(tmp_path, members, links))
    with pytest.raises(DataError, match="refused"):
        load_dataset("cifar10", tmp_path / "data")
    assert not any((tmp_path / "data").rglob("*.bin"))


def test_an_archive_placed_in_the_folder_is_verified_and_extracted_offline(tmp_path, monkeypatch):
    archive = _archive(tmp_path, _members())
    _serve(monkeypatch, archive)
    monkeypatch.setattr(cifar, "URL", "https://unreachable.invalid/x.tar.gz")
    d = load_dataset("cifar10", archive.parent, download=False)
    assert d.verified and tuple(d.x_test.shape) == (20, 3, 32, 32)


def _handmade_sums(folder: Path) -> None:
    """A ``SHA256SUMS`` of the six files, made with hashlib (not from the verified archive)."""
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}" for n in CIFAR_FILES]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_a_handmade_sha256sums_over_small_files_is_not_verified(tmp_path, capsys):
    folder = write_cifar(tmp_path / "cf", sub=None)  # 20 random records per file
    _handmade_sums(folder)
    out = tmp_path / "rc1"
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(folder), "--epochs", "1",
            "--channels", "1", "--threads", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    with pytest.warns(UnverifiedDataWarning, match=r"unverified: records per file: 20, .*10000"):
        assert main(argv) == 0
    dataset = json.loads((out / "metrics.json").read_text())["dataset"]
    assert dataset["verified"] is False and dataset["n_train"] == 100


def test_the_real_record_counts_with_a_matching_sha256sums_load_as_verified(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", 20)  # stands in for 10,000
    folder = write_cifar(tmp_path / "cf", sub=None)
    _handmade_sums(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedDataWarning)
        assert load_dataset("cifar10", folder, download=False).verified


def test_the_fingerprint_covers_the_content(tmp_path):
    a, b = write_cifar(tmp_path / "a"), write_cifar(tmp_path / "b")
    raw = bytearray((b / cifar.SUBDIR / "data_batch_5.bin").read_bytes())
    raw[100] ^= 1
    (b / cifar.SUBDIR / "data_batch_5.bin").write_bytes(bytes(raw))
    assert _load(a).fingerprint != _load(b).fingerprint
    assert _load(a).fingerprint == _load(write_cifar(tmp_path / "c")).fingerprint


def test_images_and_labels_equal_the_plain_decoding_of_the_records_bit_for_bit(tmp_path):
    write_cifar(tmp_path, n=30, sub=None)
    d = _load(tmp_path)
    for split, names in (("train", CIFAR_FILES[:5]), ("test", CIFAR_FILES[5:])):
        rec = np.concatenate([np.frombuffer((tmp_path / n).read_bytes(), np.uint8) for n in names])
        rec = rec.reshape(-1, cifar.RECORD)
        want = rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
        x = getattr(d, f"x_{split}").numpy()
        assert x.dtype == np.float32 and x.flags.c_contiguous
        assert np.array_equal(x.view(np.uint32), want.view(np.uint32))  # every bit
        assert getattr(d, f"y_{split}").tolist() == rec[:, 0].tolist()


def test_hardware_counts_use_3_input_channels():
    g = run_geometry(
        RunConfig(dataset="cifar10", model=ModelParams(channels=4, kernel=6, stride=2))
    )
    conv = g.stages[0]
    assert g.in_shape == (3, 32, 32) and g.conv_out == (4, 15, 15)
    assert conv.fan_in == 6 * 6 * 3 and conv.macs == 4 * 15 * 15
    assert conv.multipliers == 4 * 15 * 15 * 6 * 6 * 3
    assert g.stages[-1].fan_in == 4 * 15 * 15 and g.stages[-1].macs == 10


def test_cli_trains_on_the_binary_batch_files(tmp_path, capsys):
    write_cifar(tmp_path / "c")
    out = tmp_path / "run"
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "c"), "--epochs", "2",
            "--batch-size", "20", "--out", str(out), "--no-progress", "--threads", "1"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedDataWarning)
        assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "cifar10" and metrics["dataset"]["n_train"] == 100
    assert metrics["geometry"]["in_shape"] == [3, 32, 32]
    assert metrics["geometry"]["stages"][0]["fan_in"] == 108
    capsys.readouterr()
    assert main(["info", "--dataset", "cifar10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stages"][0]["multipliers"] == 4 * 15 * 15 * 108
