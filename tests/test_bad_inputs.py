"""The bad-input catalogue (issue 11): each case goes through ``aanntwin.cli.main`` and must end
in one line on stderr naming the file/field/value, the right exit status (2: the input, 1: a
fault), no traceback and nothing written to ``--out``."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import aanntwin.io
from aanntwin.cli import main
from aanntwin.config import load_nonidealities
from aanntwin.errors import AanntwinError
from aanntwin.idx import FILES

# --- files

DEEP = "[" * 100_000 + "]" * 100_000
UTF16 = '{"input_noise": 0.1}'.encode("utf-16")
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x80"


def _file(name: str, content: bytes | str | None) -> Callable[[Path], Path]:
    """A builder: ``content`` written to ``tmp/name`` (``None``: a folder of that name)."""

    def build(tmp: Path) -> Path:
        path = tmp / name
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return build


def _nonidealities(content):  # train --nonidealities FILE
    return "train", lambda tmp: ["--nonidealities", str(_file("n.json", content)(tmp))]


def _config(content):  # train --config FILE
    return "train", lambda tmp: ["--config", str(_file("c.json", content)(tmp))]


def _manifest(content):  # evaluate --export DIR with a manifest.json of ``content``
    def args(tmp: Path) -> list[str]:
        (tmp / "export").mkdir()
        _file("export/manifest.json", content)(tmp)
        return ["--export", str(tmp / "export")]

    return "evaluate", args


def _csv(content):  # characterize --csv FILE
    return "characterize", lambda tmp: ["--csv", str(_file("m.csv", content)(tmp)), "--no-plots"]


def _params(content, name="p.yaml"):  # workbook --params FILE
    return "workbook", lambda tmp: ["--params", str(_file(name, content)(tmp))]


def _idx_folder(train_images: bytes | None, name: str = FILES["train_images"]):
    """train --dataset mnist --data-dir DIR whose training images are ``train_images``."""

    def args(tmp: Path) -> list[str]:
        data = tmp / "data"
        data.mkdir()
        for stem in FILES.values():
            (data / stem).write_bytes(b"")
        (data / FILES["train_images"]).unlink()
        _file(f"data/{name}", train_images)(tmp)
        return ["--dataset", "mnist", "--data-dir", str(data)]

    return "train", args


def _idx(dims: list[int], payload: bytes = b"") -> bytes:
    return b"\0\0\x08" + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def _json(obj) -> str:
    return json.dumps(obj)


GOOD_GZ = gzip.compress(_idx([2, 28, 28], bytes(2 * 28 * 28)))
CORRUPT_GZ = GOOD_GZ[:10] + bytes(b ^ 0x5A for b in GOOD_GZ[10:-8]) + GOOD_GZ[-8:]

CASES = {
    # nonidealities (train --nonidealities)
    "nl-binary": (*_nonidealities(BINARY), ["n.json", "not UTF-8", "0x89"]),
    "nl-utf16": (*_nonidealities(UTF16), ["n.json", "UTF-16", "UTF-8"]),
    "nl-folder": (*_nonidealities(None), ["n.json", "is a folder"]),
    "nl-missing": ("train", lambda tmp: ["--nonidealities", str(tmp / "nope.json")],
                   ["nope.json", "not found"]),
    "nl-below-file": ("train", lambda tmp: ["--nonidealities", str(_file("f", "x")(tmp) / "n.json")],
                      ["n.json", "is a file, not a folder"]),
    "nl-deep": (*_nonidealities(DEEP), ["n.json", "nested 100000 levels", "at most 64"]),
    "nl-duplicate": (*_nonidealities('{"input_noise": 0.1, "input_noise": 0.2}'),
                     ["n.json", "duplicate key 'input_noise'"]),
    "nl-nan": (*_nonidealities('{"input_noise": NaN}'), ["n.json", "input_noise = NaN", "finite"]),
    "nl-infinity": (*_nonidealities('{"conv2d_input_nonlin": [0, Infinity]}'),
                    ["n.json", "conv2d_input_nonlin[1] = Infinity"]),
    "nl-overflow": (*_nonidealities('{"input_noise": 1e400}'), ["n.json", "1e400", "float range"]),
    "nl-float32": (*_nonidealities(_json({"input_noise": 1e300})),
                   ["n.json", "input_noise = 1e+300", "float32", "3.4e38"]),
    "nl-poly-float32": (*_nonidealities(_json({"conv2d_input_nonlin": [0, 1, 1e200]})),
                        ["n.json", "conv2d_input_nonlin[2] = 1e+200", "float32"]),
    "nl-long-int": (*_nonidealities('{"input_bits": ' + "9" * 5000 + "}"),
                    ["n.json", "not valid JSON"]),
    "nl-version-negative": (*_nonidealities('{"schema_version": -1}'),
                            ["n.json", "schema_version = -1", "must be the integer 1"]),
    "nl-version-true": (*_nonidealities('{"schema_version": true}'),
                        ["n.json", "schema_version = True", "integer 1"]),
    "nl-version-float": (*_nonidealities('{"schema_version": 2.0}'),
                         ["n.json", "schema_version = 2.0", "integer 1"]),
    "nl-version-string": (*_nonidealities('{"schema_version": "1"}'),
                          ["n.json", "schema_version = '1'", "integer 1"]),
    "nl-version-zero": (*_nonidealities('{"schema_version": 0}'), ["schema_version = 0"]),
    "nl-list": (*_nonidealities("[1, 2]"), ["n.json", "expected a JSON object"]),
    # run config (train --config)
    "cfg-binary": (*_config(BINARY), ["c.json", "not UTF-8"]),
    "cfg-utf16": (*_config(UTF16), ["c.json", "UTF-16"]),
    "cfg-folder": (*_config(None), ["c.json", "is a folder"]),
    "cfg-deep": (*_config('{"train": ' + DEEP + "}"), ["c.json", "nested 100001 levels"]),
    "cfg-duplicate": (*_config('{"train": {"epochs": 1, "epochs": 2}}'),
                      ["c.json", "duplicate key 'epochs'"]),
    "cfg-float32": (*_config(_json({"nonidealities": {"relu_cutoff": -1e300}})),
                    ["c.json", "relu_cutoff = -1e+300", "float32"]),
    "cfg-version": (*_config('{"schema_version": true}'), ["c.json", "schema_version = True"]),
    # export manifest (evaluate --export)
    "manifest-binary": (*_manifest(BINARY), ["manifest.json", "not UTF-8"]),
    "manifest-utf16": (*_manifest(UTF16), ["manifest.json", "UTF-16"]),
    "manifest-folder": (*_manifest(None), ["manifest.json", "is a folder"]),
    "manifest-deep": (*_manifest(DEEP), ["manifest.json", "nested 100000 levels"]),
    "manifest-duplicate": (*_manifest('{"schema_version": 1, "schema_version": 1}'),
                           ["manifest.json", "duplicate key 'schema_version'"]),
    "manifest-version-true": (*_manifest('{"schema_version": true}'),
                              ["manifest.json", "schema_version = True"]),
    "manifest-version-float": (*_manifest('{"schema_version": 1.0}'),
                               ["manifest.json", "schema_version = 1.0"]),
    "manifest-nan": (*_manifest('{"schema_version": 1, "stages": [{"ref": NaN}]}'),
                     ["manifest.json", "NaN", "finite"]),
    # characterization CSV (characterize --csv)
    "csv-binary": (*_csv(BINARY), ["m.csv", "not UTF-8"]),
    "csv-utf16": (*_csv("# circuit: relu\nx,y\n0,0\n".encode("utf-16")), ["m.csv", "UTF-16"]),
    "csv-extra-fields": (*_csv("# circuit: multiplier\nx\n1,2,3\n"),
                         ["m.csv", "line 3, column 2", "more than the 1 column names"]),
    "csv-folder": (*_csv(None), ["m.csv", "is a folder"]),
    # workbook parameters (workbook --params)
    "params-binary": (*_params(BINARY), ["p.yaml", "not UTF-8"]),
    "params-utf16": (*_params("epochs: 1\n".encode("utf-16")), ["p.yaml", "UTF-16"]),
    "params-folder": (*_params(None), ["p.yaml", "is a folder"]),
    "params-deep-yaml": (*_params("a: " + DEEP), ["p.yaml", "nested more than 64"]),
    "params-yaml-duplicate": (*_params("epochs: 1\nepochs: 2\n"), ["p.yaml", "duplicate key 'epochs'"]),
    "params-yaml-alias": (*_params("a: &x [*x]\n"), ["p.yaml", "aliases are not allowed"]),
    "params-yaml-bad-date": (*_params("seed: 2001-13-45\n"), ["p.yaml", "month must be in 1..12"]),
    "params-yaml-long-int": (*_params("epochs: " + "9" * 5000), ["p.yaml", "4300 digits"]),
    "params-yaml-nan": (*_params("lr: .nan\n"), ["p.yaml", "not a plain parameter value"]),
    "params-yaml-list-key": (*_params("? [1]\n: 2\n"), ["p.yaml", "not valid YAML"]),
    "params-duplicate-json": (*_params('{"epochs": 1, "epochs": 2}', "p.json"),
                              ["p.json", "duplicate key 'epochs'"]),
    "params-nan-json": (*_params('{"epochs": NaN}', "p.json"), ["p.json", "epochs = NaN"]),
    # IDX files (train --dataset mnist --data-dir)
    "idx-corrupt-deflate": (*_idx_folder(CORRUPT_GZ, FILES["train_images"] + ".gz"),
                            ["train-images-idx3-ubyte.gz", "corrupt or truncated gzip"]),
    "idx-truncated-gz": (*_idx_folder(GOOD_GZ[:40], FILES["train_images"] + ".gz"),
                         ["train-images-idx3-ubyte.gz", "corrupt or truncated gzip"]),
    "idx-not-gzip": (*_idx_folder(b"plain bytes", FILES["train_images"] + ".gz"),
                     ["train-images-idx3-ubyte.gz", "gzip"]),
    "idx-zero-images": (*_idx_folder(_idx([0, 28, 28])), ["train-images-idx3-ubyte", "[0, 28, 28]",
                                                         "no images"]),
    "idx-empty": (*_idx_folder(b""), ["train-images-idx3-ubyte", "bad magic number"]),
    "idx-truncated": (*_idx_folder(_idx([2, 28, 28], bytes(100))),
                      ["train-images-idx3-ubyte", "truncated or corrupt", "dims [2, 28, 28]"]),
    "idx-huge-dims": (*_idx_folder(_idx([2**32 - 1] * 4)), ["train-images-idx3-ubyte", "truncated"]),
    "idx-folder": (*_idx_folder(None), ["train-images-idx3-ubyte", "is a folder"]),
}  # fmt: skip


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


def _one_clean_line(err: str, command: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"aanntwin {command}: error: "), err
    assert "Traceback" not in err and 'File "' not in err, err


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_file(tmp_path, capsys, case):
    command, args, needles = CASES[case]
    out = tmp_path / "out"
    takes_out = command != "evaluate"  # evaluate writes nothing: JSON on stdout
    status, err = _run(capsys, [command, *args(tmp_path), *(["--out", str(out)] * takes_out)])
    assert status == 2, err
    _one_clean_line(err, command)
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "n.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"input_noise": 0.1}')
    assert load_nonidealities(str(path)).input_noise == 0.1


def test_nesting_up_to_the_limit_is_read(tmp_path):
    from aanntwin.io import MAX_JSON_DEPTH, parse_json

    deepest = parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "x.json")
    for _ in range(MAX_JSON_DEPTH - 1):
        (deepest,) = deepest
    assert deepest == []
    with pytest.raises(AanntwinError, match="nested 65 levels"):
        parse_json("[" * 65 + "]" * 65, "x.json")


# --- faults


@contextlib.contextmanager
def _disk_full(path):
    raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
    yield  # pragma: no cover


SHIPPED_CSV = Path(aanntwin.__file__).parent / "characterization" / "circuits" / "data"


def test_disk_full_at_the_write_layer_is_a_fault(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(aanntwin.io, "atomic_path", _disk_full)
    out = tmp_path / "out"
    argv = ["characterize", "--csv", str(SHIPPED_CSV / "relu_dc.csv"), "--no-plots",
            "--out", str(out)]  # fmt: skip
    status, err = _run(capsys, argv)
    assert status == 1, err
    _one_clean_line(err, "characterize")
    assert "No space left on device" in err and "disk full" in err
    assert not out.exists()


def _raising(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize(
    ("exc", "status", "needle"),
    [
        (MemoryError(), 1, "out of memory"),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB\nmore"),
            1,
            "out of device memory (CUDA out of memory. Tried to allocate 9 GiB)",
        ),
        (OSError(errno.EIO, "Input/output error", "/dev/x"), 1, "/dev/x: Input/output error"),
        (RecursionError("maximum recursion depth exceeded"), 2, "nested too deeply"),
        (PermissionError(errno.EACCES, "Permission denied", "/p/f"), 2, "/p/f: permission denied"),
        (FileExistsError(errno.EEXIST, "File exists", "/p/f"), 2, "/p/f: already exists"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 2, "not UTF-8"),
        (EOFError("Compressed file ended"), 2, "corrupt or truncated"),
    ],
)
def test_the_last_resort_net(capsys, monkeypatch, exc, status, needle):
    """An expected failure that escapes its reader still ends in one line, not a traceback."""
    got, err = _run_with(capsys, monkeypatch, _raising(exc))
    assert got == status, err
    _one_clean_line(err, "info")
    assert needle in err, err


def _run_with(capsys, monkeypatch, run):
    import aanntwin.cli as cli

    real = cli.build_parser

    def build(command=None):
        parser = real(command)
        parser._subparsers._group_actions[0].choices["info"].set_defaults(run=run)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)
    return _run(capsys, ["info"])


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    bad = _file("n.json", BINARY)(tmp_path)
    argv = ["train", "--nonidealities", str(bad), "--out", str(tmp_path / "out")]
    with pytest.raises(AanntwinError, match="not UTF-8"):
        main(["--debug", *argv])
    monkeypatch.setenv("AANNTWIN_DEBUG", "1")
    with pytest.raises(AanntwinError, match="not UTF-8"):
        main(argv)
    monkeypatch.setenv("AANNTWIN_DEBUG", "0")
    assert main(argv) == 2


def test_debug_reraises_a_fault_too(capsys, monkeypatch):
    monkeypatch.setenv("AANNTWIN_DEBUG", "1")
    with pytest.raises(MemoryError):
        _run_with(capsys, monkeypatch, _raising(MemoryError()))


def test_a_bug_is_not_hidden(capsys, monkeypatch):
    """Only expected failures are caught: a programming error keeps its traceback."""
    with pytest.raises(ZeroDivisionError):
        _run_with(capsys, monkeypatch, _raising(ZeroDivisionError()))


# --- a real export, tampered


@pytest.fixture(scope="module")
def real_export(trained_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aanntwin.studies.export import export_run

    folder = tmp_path_factory.mktemp("real") / "export"
    export_run(trained_run().folder, folder, bits=4)
    return folder


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("name", ["conv"], "stages: missing ['conv']"),  # TypeError: unhashable, before
        ("name", None, "stages: missing ['conv']"),  # TypeError: sorting None, before
        ("shape", 5, "stage conv.shape = 5"),  # TypeError: tuple(5), before
    ],
)
def test_tampered_export_stage(real_export, tmp_path, capsys, field, value, needle):
    folder = tmp_path / "export"
    shutil.copytree(real_export, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["stages"][0][field] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    status, err = _run(capsys, ["evaluate", "--export", str(folder)])
    assert status == 2, err
    _one_clean_line(err, "evaluate")
    assert "manifest.json" in err and needle in err, err


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00garbage", b"[1, 2]", b'{"ok": true}', b'{"notebooks": "x"}', b"{" * 100_000],
)
def test_a_damaged_workbook_run_record_means_rerun_not_a_traceback(tmp_path, content):
    from aanntwin.report.workbook import _previous_run

    record = tmp_path / "run.json"
    record.write_bytes(content)
    assert _previous_run(record) == {}
    record.write_text('{"notebooks": [{"name": "00_explorer"}], "ok": true}')
    assert _previous_run(record)["ok"] is True


def test_damaged_headlines_are_an_error_naming_the_file(tmp_path):
    from aanntwin.report.notebook import load_headlines

    (tmp_path / "headlines.json").write_bytes(b"\x00\x01binary")
    with pytest.raises(AanntwinError, match="headlines.json"):
        load_headlines(tmp_path)
