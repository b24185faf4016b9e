"""A data folder's ``SHA256SUMS`` is read as ``sha256sum -c`` reads it: GNU lines with
lowercase or uppercase digests, BSD (``--tag``) lines; a line in neither form, a file that is
not UTF-8 are one-line errors naming the file (exit 2)."""

from __future__ import annotations

import hashlib
import shutil
import warnings

import pytest

from aanntwin.cli import main
from aanntwin.data import load_dataset
from aanntwin.errors import DataError
from aanntwin.idx import FILES, UnverifiedDataWarning
from tests.synthetic_data import CIFAR_FILES, write_cifar


def _mnist_copy(mnist_dir, dst):
    dst.mkdir()
    for stem in FILES.values():
        shutil.copy(mnist_dir / f"{stem}.gz", dst / f"{stem}.gz")
    return dst


def _sums(folder, names, line):
    """``SHA256SUMS`` of ``names`` in ``folder``, each line ``line(digest, name)``."""
    digests = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}
    (folder / "SHA256SUMS").write_text("".join(line(d, n) + "\n" for n, d in digests.items()))


def _train(tmp_path, folder, dataset="mnist"):
    argv = ["train", "--dataset", dataset, "--data-dir", str(folder), "--epochs", "1",
            "--channels", "1", "--threads", "1", "--no-progress", "--out", str(tmp_path / "r")]  # fmt: skip
    return main(argv)


def _load_cifar(folder):
    with warnings.catch_warnings():  # small files, not the real ones: unverified
        warnings.simplefilter("ignore", UnverifiedDataWarning)
        return load_dataset("cifar10", folder, download=False)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "line",
    [
        lambda d, n: (
            f"{d.upper()}  {n}"
        ),  # awk '{print toupper($1)"  "$2}': sha256sum -c accepts it
        lambda d, n: f"SHA256 ({n}) = {d}",  # sha256sum --tag
        lambda d, n: f"{d} *./{n}",  # binary mode, ./ prefix
    ],
    ids=["uppercase", "bsd", "binary-dot-slash"],
)
def test_checksum_lines_sha256sum_accepts_verify_the_files(mnist_dir, tmp_path, line):
    folder = _mnist_copy(mnist_dir, tmp_path / "m")
    _sums(folder, [f"{s}.gz" for s in FILES.values()], line)
    assert load_dataset("mnist", folder, download=False).verified


@pytest.mark.parametrize("case", ["uppercase", "bsd"])
def test_a_wrong_digest_in_either_form_is_an_error_naming_the_file(tmp_path, capsys, case):
    folder = write_cifar(tmp_path / "c", sub=None)
    wrong = {"test_batch.bin": "ab" * 32}
    if case == "bsd":
        line = lambda d, n: f"SHA256 ({n}) = {wrong.get(n, d)}"
    else:
        line = lambda d, n: f"{wrong.get(n, d).upper()}  {n}"
    _sums(folder, CIFAR_FILES, line)
    assert _train(tmp_path, folder, "cifar10") == 2
    err = _one_error_line(capsys)
    assert "test_batch.bin: SHA-256 does not match" in err and "SHA256SUMS" in err


def test_an_uppercase_digest_of_the_right_file_is_no_error(tmp_path):
    folder = write_cifar(tmp_path / "c", sub=None)
    _sums(folder, CIFAR_FILES, lambda d, n: f"{d.upper()}  {n}")
    assert len(_load_cifar(folder).x_test) == 20


def test_a_line_in_neither_form_is_an_error_naming_the_file_and_line(tmp_path, capsys):
    folder = write_cifar(tmp_path / "c", sub=None)
    _sums(folder, CIFAR_FILES, lambda d, n: f"{d}  {n}")
    with open(folder / "SHA256SUMS", "a") as fh:
        fh.write("MD5 (test_batch.bin) = 0123456789abcdef0123456789abcdef\n")
    assert _train(tmp_path, folder, "cifar10") == 2
    err = _one_error_line(capsys)
    assert f"{folder / 'SHA256SUMS'}, line 7: not a SHA-256 checksum line" in err


def test_a_sums_file_that_is_not_utf8_names_itself(mnist_dir, tmp_path, capsys):
    folder = _mnist_copy(mnist_dir, tmp_path / "m")
    (folder / "SHA256SUMS").write_bytes(b"x\xff")
    assert _train(tmp_path, folder) == 2
    err = _one_error_line(capsys)
    assert f"{folder / 'SHA256SUMS'}: the SHA256SUMS file is not UTF-8 text" in err


def test_blank_lines_and_comments_are_skipped_but_a_second_digest_is_an_error(tmp_path):
    folder = write_cifar(tmp_path / "c", sub=None)
    _sums(folder, CIFAR_FILES, lambda d, n: f"# made by hand\n\n{d}  {n}")
    assert len(_load_cifar(folder).x_test) == 20
    with open(folder / "SHA256SUMS", "a") as fh:
        fh.write(f"{'0' * 64}  test_batch.bin\n")
    with pytest.raises(DataError, match=r"SHA256SUMS, line 19: test_batch.bin is listed again"):
        _load_cifar(folder)
