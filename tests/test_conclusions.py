"""Report conclusions, readable headline labels and quick/demo banners (reports and pages)."""

from types import SimpleNamespace as NS

import nbformat
import pandas as pd
import pytest

from aanntwin.config import Nonidealities
from aanntwin.report import conclusions as c
from aanntwin.report import notebook as nb
from aanntwin.report.labels import label, value_text
from aanntwin.report.pages import render_comparison, render_index
from aanntwin.report.records import NotebookRun, WorkbookRun
from aanntwin.report.workbook import run_workbook


def test_engineering_units():
    assert c.volts(0.0429) == "42.9 mV"
    assert c.volts(2e-5) == "20 µV"
    assert c.volts(1.5) == "1.5 V"
    assert c.volts(None) == "n/a"
    assert c.amps(1.45e-8) == "14.5 nA" and c.amps(2.5e-6) == "2.5 µA"
    assert c.percent(0.975) == "97.5 %"
    assert c.hertz(1e7) == "10 MHz" and c.hertz(1000.0) == "1 kHz"


def _spec(passed=True):
    tol = [NS(kind="input", unit="V (std)"), NS(kind="conv_out", unit="V (std)"),
           NS(kind="conv_gain", unit="relative (std)"),
           NS(kind="linear_offset", unit="V (std)")]  # fmt: skip
    search = NS(ideal=0.982, threshold=0.972, target=NS(confidence=0.95, max_drop=0.01))
    check = NS(quantile=0.975 if passed else 0.95, passed=passed)
    joint = {"input": 0.0429, "conv_out": 0.25, "conv_gain": 0.005, "linear_offset": 0.012}
    return NS(search=search, joint_check=check, tolerances=tol, joint=joint,
              bits={"conv2d": 4, "linear": None})  # fmt: skip


CHIPS = NS(yield_=0.98, low=0.93, high=0.995, instances=100)


def test_spec_sentences_state_the_verdict_in_words_and_units():
    text = " ".join(c.spec_sentences(_spec(), CHIPS))
    assert "meets the target: 97.5 % ≥ 97.2 % at 95 % confidence" in text
    assert "(ideal 98.2 %, allowed drop 1 point)" in text
    assert "98.0 % of 100 chips pass (95 % CI 93.0 % to 99.5 %)" in text
    assert "input 42.9 mV" in text and "conv MAC output 250 mV" in text
    assert "stage full scale 1 V" in text
    assert "conv gain 0.5 % (std)" in text and "final stage offset 12 mV (std)" in text
    assert "conv 4, final stage more than searched" in text
    assert c.spec_verdict(_spec(), CHIPS) == "The spec limits meet the target."
    failed = " ".join(c.spec_sentences(_spec(passed=False)))
    assert "does NOT meet the target: 95.0 % < 97.2 %" in failed and "chips pass" not in failed
    assert "NOT" in c.spec_verdict(_spec(passed=False))


def _training(ideal_under, hw_under, spread=0.3):
    return pd.DataFrame([
        {"model": "ideal", "ideal test accuracy (%)": 97.5,
         "under nonidealities: mean (%)": ideal_under, "std (%)": spread, "runs": 5,
         "chip_seed": 0},
        {"model": "hardware-aware", "ideal test accuracy (%)": 97.0,
         "under nonidealities: mean (%)": hw_under, "std (%)": spread, "runs": 5, "chip_seed": 0},
    ])  # fmt: skip


def test_training_sentences_weigh_the_gain_against_the_spread():
    text = " ".join(c.training_sentences(_training(93.2, 96.1)))
    assert "97.5 % test accuracy" in text and "93.2 % ± 0.3 %" in text
    assert "a loss of 4.3 points" in text and "(+2.9 points)" in text and "pays off" in text
    assert "not needed" in " ".join(c.training_sentences(_training(93.2, 93.4)))
    assert "loses accuracy" in " ".join(c.training_sentences(_training(96.0, 93.0)))
    assert "undertrained" not in text


def test_an_undertrained_model_is_called_out():
    spec = _spec()
    spec.search.ideal = 0.296
    assert "only 29.6 %: it is undertrained" in " ".join(c.spec_sentences(spec))
    assert c.weak_model(0.9) == []


def test_characterization_sentences_in_physical_units():
    result = NS(
        fidelity={"inputs": 8, "conditions": 200, "twin": {"rms_pct_fs": 0.011, "max_pct_fs": 0.031},
                  "twin_existing_fields": {"rms_pct_fs": 0.66}},
        noise={"multiplier": {"sigma": 0.00145, "band_hz": [1e3, 1e7]}},
        mismatch={"instances": 20, "gain_sigma": 0.0084, "equivalent_offset_sigma": 0.0308},
        normalization={"multiplier noise": {"y": "1e-05 A"},
                       "multiplier montecarlo": {"y": "1e-05 A"}},
        nonidealities=Nonidealities(input_noise=0.01, chip_seed=3), lacking=[],
    )  # fmt: skip
    text = " ".join(c.characterization_sentences(result))
    assert "8-input MAC to 0.011 % of full scale RMS" in text
    assert "multiplier output noise is 14.5 nA RMS over 1 kHz to 10 MHz" in text
    assert "gain mismatch is 0.84 % (std)" in text and "offset 308 nA (std)" in text
    assert "activates 1 nonidealities." in text
    bare = NS(fidelity=None, noise={}, mismatch=None, normalization={},
              nonidealities=Nonidealities(), lacking=[])  # fmt: skip
    assert "not checked" in " ".join(c.characterization_sentences(bare))


def test_markdown_puts_the_verdict_first_in_bold():
    md = c.markdown(["One.", " Two. "], verdict="Specs met.")
    assert md == "### Conclusion\n\n**Specs met.** One. Two.\n"
    assert c.markdown(["Only."]) == "### Conclusion\n\nOnly.\n"


def _cells(*specs):
    book = nbformat.v4.new_notebook()
    for kind, src, tags in specs:
        cell = (nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell)(src)
        cell.metadata["tags"] = tags
        book.cells.append(cell)
    return book


def test_move_to_top_puts_conclusions_after_the_title():
    book = _cells(("code", "p", ["parameters"]), ("md", "# T", []), ("code", "a", []),
                  ("md", "## S", []), ("code", "end", [c.TAG]))  # fmt: skip
    assert [x.source for x in c.move_to_top(book).cells] == ["p", "# T", "end", "a", "## S"]
    plain = _cells(("md", "# T", []), ("code", "a", []))
    assert [x.source for x in c.move_to_top(plain).cells] == ["# T", "a"]
    untitled = _cells(("code", "a", []), ("code", "end", [c.TAG]))
    assert [x.source for x in c.move_to_top(untitled).cells] == ["end", "a"]


def test_the_banner_moves_to_the_top_of_the_conclusion():
    from nbformat.v4 import new_output

    from aanntwin.report import banners

    book = _cells(("md", "# T", []), ("code", "nb.header(ctx)", []), ("code", "end", [c.TAG]))
    banner = banners.for_report(True, "digits")
    book.cells[1].outputs = [new_output("display_data", data={"text/html": banner + "<table>"})]
    cells = c.move_to_top(book).cells
    assert cells[1].outputs[0].data["text/html"] == banner
    assert cells[2].outputs[0].data["text/html"] == "<table>"


def _fixture(path, params, *cells):
    book = _cells(("md", "# Fixture title", []), ("code", params, ["parameters"]),
                  *cells)  # fmt: skip
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}  # fmt: skip
    nbformat.write(book, path)


CONCLUDE = "from aanntwin.report import conclusions\nconclusions.show(['CONCLUSION-TEXT'], 'OK')"


def test_reports_open_with_the_conclusion_and_banners_follow_the_parameters(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    params = "dataset = 'digits'\nquick = False\nout_dir = '.'"
    _fixture(folder / "01_body.ipynb", params, ("code", "print('BODY-OUTPUT')", []),
             ("md", "## Section", []), ("code", CONCLUDE, [c.TAG]))  # fmt: skip
    _fixture(folder / "02_plain.ipynb", params, ("code", "print('PLAIN')", []))
    run = run_workbook({"dataset": "digits"}, "demo", tmp_path / "r", notebooks_dir=folder,
                       overrides={"02_plain": {"quick": True}}, pdf=False)  # fmt: skip
    assert run.ok, [n.error for n in run.notebooks]
    html = (tmp_path / "r" / "demo" / "01_body.html").read_text()
    order = [html.index(s) for s in ("Fixture title", "CONCLUSION-TEXT", "BODY-OUTPUT", "Section")]
    assert order == sorted(order) and "<strong>OK</strong>" in html
    executed = nbformat.read(tmp_path / "r" / "demo" / run.notebooks[0].executed, as_version=4)
    assert c.TAG in executed.cells[-1].metadata["tags"]  # it ran last
    assert "PLAIN" in (tmp_path / "r" / "demo" / "02_plain.html").read_text()
    assert run.quick_notebooks == ["02_plain"] and run.demo_datasets == ["digits"]
    index = (tmp_path / "r" / "demo" / "index.html").read_text()
    assert "QUICK RUN (02_plain)" in index and "DEMO DATASET" in index
    full = run_workbook({"dataset": "mnist"}, "full", tmp_path / "r", notebooks_dir=folder,
                        pdf=False)  # fmt: skip
    assert full.quick_notebooks == [] and full.demo_datasets == []
    assert "aanntwin-banner" not in (tmp_path / "r" / "full" / "index.html").read_text()


@pytest.mark.parametrize(("params", "quick", "demo"), [
    ({"dataset": "digits"}, False, True),
    ({"dataset": "mnist", "quick": True}, True, False),
    ({"dataset": "mnist"}, False, False),
    ({}, False, True),  # the notebooks' default dataset is the demo
])  # fmt: skip
def test_report_header_banner(tmp_path, params, quick, demo):
    html = nb.header(nb.setup({**params, "out_dir": str(tmp_path)})).data
    assert ("QUICK RUN" in html) == quick and ("DEMO DATASET" in html) == demo
    assert ("aanntwin-banner" in html) == (quick or demo)


def _run(name, params, headlines, **kw):
    run = WorkbookRun(name, f"/x/{name}", params, "f", headlines=headlines, finished=True, **kw)
    run.notebooks = [NotebookRun("04_specs", status="ok")]
    return run


HEADS = {"joint_accuracy_q": {"value": 97.5, "unit": "%"},
         "tolerable_input_noise": {"value": 0.0429, "unit": "V"}}  # fmt: skip


def test_index_and_comparison_show_labels_units_and_banners():
    full = _run("mnist-full", {"dataset": "mnist"}, HEADS)
    quick_heads = {**HEADS, "yield": {"value": 95.0, "unit": "%", "quick": True}}
    quick = _run("digits-quick", {"dataset": "digits"}, quick_heads,
                 quick_notebooks=["04_specs"], demo_datasets=["digits"])  # fmt: skip
    page = render_index(full)
    assert "aanntwin-banner" not in page and "aanntwin-mark" not in page
    assert "Joint accuracy at the spec limits (lower quantile over draws)" in page
    assert 'title="joint_accuracy_q"' in page and "42.9 mV RMS" in page
    page = render_index(quick)
    assert "QUICK RUN (04_specs)" in page and "DEMO DATASET" in page
    both = render_comparison([full, quick])
    assert "full run" in both and "QUICK: 04_specs" in both and "DEMO: digits" in both
    assert "variant digits-quick" in both and "variant mnist-full" not in both
    assert both.count("aanntwin-mark") == 3  # quick, demo and the quick yield figure
    assert "Input noise limit (joint spec, stage full scale 1 V)" in both
    old = _run("old", {"quick": True}, {})  # an older record: from the parameters
    assert "QUICK RUN" in render_index(old) and "DEMO DATASET" in render_index(old)


def test_labels_and_values():
    assert label("tolerable_conv_gain_mismatch") == "Conv stage gain mismatch limit (joint spec)"
    assert label("recommended_bits_linear") == "Final stage weight bits (recommended)"
    assert label("something_new") == "something_new"
    assert value_text(0.012, "V", "tolerable_linear_offset_mismatch") == "12 mV (std)"
    assert value_text(0.005, "relative") == "0.5 % (std)"
    assert value_text(None, "V") == "n/a" and value_text(3, "bits") == "3 bits"


def test_headlines_record_label_and_quick(tmp_path):
    ctx = nb.setup({"out_dir": str(tmp_path), "quick": True})
    table = nb.headlines(ctx, {"a": (1.0, "%", "A figure"), "b": (2, "bits")})
    assert list(table["figure"]) == ["A figure", "b"] and list(table["value"]) == ["1 %", "2 bits"]
    assert nb.load_headlines(tmp_path) == {
        "a": {"value": 1.0, "unit": "%", "label": "A figure", "quick": True},
        "b": {"value": 2, "unit": "bits", "quick": True},
    }
    assert "A figure" in render_index(_run("r", {}, nb.load_headlines(tmp_path)))


def test_the_explorer_conclusion_states_both_accuracies_and_what_is_on():
    ideal = NS(accuracy=0.92, accuracy_std=0.0, runs=1)
    under = NS(accuracy=0.874, accuracy_std=0.0031, runs=3)
    nl = Nonidealities(input_noise=0.01, relu_cutoff=0.05, chip_seed=4)
    text = " ".join(c.explorer_sentences(ideal, under, nl))
    assert "92.0 %" in text and "87.4 % ± 0.3 %" in text and "3 draws" in text
    assert "chip instance 4" in text and "2 active nonidealities" in text
    assert "input_noise, relu_cutoff" in text and "4.6 points" in text
    assert "undertrained" not in text
