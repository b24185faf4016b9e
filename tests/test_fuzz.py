"""Property-based tests: arbitrary bytes and arbitrary JSON given to every file-reading entry
point (and arbitrary text to the sweep grid parsers) raise nothing but ``AanntwinError``."""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aanntwin.characterization.curves import read_csv
from aanntwin.config import RunConfig, load_config, load_nonidealities
from aanntwin.errors import AanntwinError
from aanntwin.idx import read_idx_file
from aanntwin.report.workbook import load_parameters
from aanntwin.studies.export import MANIFEST, load_export
from aanntwin.studies.grid import parse_choices, parse_ints, parse_levels

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
NONIDEALITY_KEYS = ["input_noise", "conv2d_input_nonlin", "linear_weight_bits", "schema_version",
                    "saturation", "relu_cutoff", "weight_zero_level"]  # fmt: skip
CONFIG_KEYS = ["dataset", "model", "train", "nonidealities", "schema_version", "chips"]
# Objects with the real field names, so the values (not only the names) get exercised.
NONIDEALITY_LIKE = st.dictionaries(st.sampled_from(NONIDEALITY_KEYS), JSON, max_size=4)
CONFIG_LIKE = st.dictionaries(
    st.sampled_from(CONFIG_KEYS), JSON | NONIDEALITY_LIKE | st.dictionaries(st.sampled_from(
        ["channels", "kernel", "epochs", "lr", "hidden"]), JSON, max_size=3), max_size=4,
)  # fmt: skip
PREFIXES = st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"{", b"[" * 200, b'{"a": NaN}'])
RAW = st.builds(lambda p, b: p + b, PREFIXES, st.binary(max_size=200))


def _json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


FILE_CONTENT = RAW | JSON.map(_json_bytes)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _rejects_cleanly(fn, *args) -> None:
    with contextlib.suppress(AanntwinError):  # anything else fails the test
        fn(*args)


@FUZZ
@given(content=FILE_CONTENT | NONIDEALITY_LIKE.map(_json_bytes))
def test_nonidealities_file(work, content):
    (work / "n.json").write_bytes(content)
    _rejects_cleanly(load_nonidealities, str(work / "n.json"))


@FUZZ
@given(content=FILE_CONTENT | CONFIG_LIKE.map(_json_bytes))
def test_config_file(work, content):
    (work / "c.json").write_bytes(content)
    _rejects_cleanly(load_config, str(work / "c.json"))


@FUZZ
@given(
    content=FILE_CONTENT
    | st.dictionaries(st.sampled_from(["schema_version", "config", "config_hash", "stages"]),
                      JSON, max_size=4).map(_json_bytes)
    | st.fixed_dictionaries({"schema_version": st.just(1),
                             "config": st.just(RunConfig().to_dict()),
                             "config_hash": st.just(RunConfig().content_hash()),
                             "stages": JSON}).map(_json_bytes)
)  # fmt: skip
def test_export_manifest(work, content):
    folder = work / "export"
    folder.mkdir(exist_ok=True)
    (folder / MANIFEST).write_bytes(content)
    _rejects_cleanly(load_export, folder)


YAML_LINES = st.lists(
    st.sampled_from(["a: 1", "a: &x [1]", "b: *x", "- 1", "c: 2001-13-45", "d: .nan", "? [1]",
                     ": 2", "e: !!binary AAAA", "f: !!float x", "g: 1" + "0" * 5000, "  h: 1",
                     "variants: [{name: a}]", "notebooks: 1", "{", "x: !!python/name:os.system"])
    | st.text(max_size=12), max_size=6,
).map(lambda lines: "\n".join(lines).encode())  # fmt: skip


@FUZZ
@given(content=FILE_CONTENT | YAML_LINES, suffix=st.sampled_from([".yaml", ".json"]))
def test_workbook_parameters_file(work, content, suffix):
    path = work / f"params{suffix}"
    path.write_bytes(content)
    _rejects_cleanly(load_parameters, path)


CSV_LINES = st.lists(
    st.sampled_from(["# circuit: multiplier", "# format: aanntwin-characterization/1",
                     "x,w,y", "0,0,0", "1,nan,2", "circuit,analysis,x,w,y", "relu,dc,1,2,3",
                     "instance,y", "", "a,b", '"unterminated', "1e999,0,0"])
    | st.text(max_size=20), max_size=8,
).map(lambda lines: "\n".join(lines).encode())  # fmt: skip


@FUZZ
@given(content=RAW | CSV_LINES)
def test_characterization_csv(work, content):
    (work / "m.csv").write_bytes(content)
    _rejects_cleanly(read_csv, work / "m.csv")


def _idx(ndim: int, dims: list[int], payload: bytes) -> bytes:
    return b"\0\0\x08" + bytes([ndim]) + b"".join(struct.pack(">I", d) for d in dims) + payload


IDX = st.builds(
    _idx, st.integers(0, 6), st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 4), max_size=5),
    st.binary(max_size=64),
)  # fmt: skip


@FUZZ
@given(content=RAW | IDX, gz=st.booleans(), cut=st.integers(0, 40))
def test_idx_file(work, content, gz, cut):
    path = work / ("f.gz" if gz else "f")
    if gz:
        packed = gzip.compress(content)
        content = packed[: len(packed) - cut] if cut % 2 else packed[:12] + content
    path.write_bytes(content)
    _rejects_cleanly(read_idx_file, path)


GRID_TEXT = st.text(alphabet="0123456789.,:-+eEinfaoNr x", max_size=24) | st.text(max_size=12)


@FUZZ
@given(text=GRID_TEXT)
def test_sweep_grid_strings(text):
    _rejects_cleanly(parse_levels, text, "--levels")
    _rejects_cleanly(parse_ints, text, "--bits", 1, 16)
    _rejects_cleanly(parse_choices, text, "--kinds", ["conv_out", "linear_out"])


@pytest.fixture(scope="module")
def real_export(trained_run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A real export of the shared small digits run (its folder to tamper with, its manifest)."""
    from aanntwin.studies.export import export_run

    folder = tmp_path_factory.mktemp("real") / "export"
    export_run(trained_run().folder, folder, bits=4)
    return folder, json.loads((folder / MANIFEST).read_text())


@FUZZ
@given(
    stage=st.none() | st.integers(0, 5),
    pick=st.integers(0, 50),
    key=st.sampled_from(["schema_version", "config", "config_hash", "stages"]),
    value=JSON,
)
def test_tampered_real_manifest(real_export, stage, pick, key, value):
    """One field of a real export's manifest (top level, or any field of a stage) replaced."""
    folder, manifest = real_export
    data = json.loads(json.dumps(manifest))
    if stage is None:
        data[key] = value
    else:
        entry = data["stages"][stage % len(data["stages"])]
        entry[sorted(entry)[pick % len(entry)]] = value
    (folder / MANIFEST).write_text(json.dumps(data))
    _rejects_cleanly(load_export, folder)
