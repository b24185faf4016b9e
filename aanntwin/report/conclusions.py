"""Report conclusions: a short paragraph in words and units that opens every report.

A notebook's last cell builds sentences from its results (the builders below) and calls
:func:`show`; the cell is tagged ``conclusion`` in its metadata. It runs last (it needs the
results), and the workbook's HTML rendering moves every ``conclusion`` cell to right after the
title (:func:`move_to_top`), so the designers' report opens with it. In JupyterLab it stays at
the bottom.
"""

from __future__ import annotations

import math
import re
from typing import Any

WEAK_ACCURACY = 0.8
"""Below this ideal test accuracy (fraction) a conclusion warns that the model is undertrained
(e.g. a quick run's 2 epochs): limits derived from it say little about the circuit."""
TAG = "conclusion"
"""The cell-metadata tag of a conclusion cell (moved to the top of the rendered report)."""


def markdown(sentences: list[str], verdict: str | None = None) -> str:
    """The conclusion as Markdown: a "Conclusion" heading, the verdict in bold (when given),
    then the sentences as one paragraph."""
    lead = f"**{verdict.strip()}** " if verdict else ""
    body = " ".join(s.strip() for s in sentences if s and s.strip())
    return f"### Conclusion\n\n{lead}{body}".rstrip() + "\n"


def show(sentences: list[str], verdict: str | None = None) -> None:
    """Display the conclusion (Markdown: "Conclusion", the verdict bold first, the sentences).
    The calling cell must be tagged ``conclusion`` so the report opens with it."""
    from IPython.display import Markdown, display  # optional dependency (the notebooks extra)

    display(Markdown(markdown(sentences, verdict)))


def move_to_top(nb: Any) -> Any:
    """Move every cell tagged ``conclusion`` to right after the first Markdown cell (the
    title), in their order; a notebook without one is returned unchanged. ``nb``: an nbformat
    notebook node, changed in place and returned."""
    cells = list(nb.cells)
    tagged = [c for c in cells if TAG in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        return nb
    rest = [c for c in cells if c not in tagged]
    title = next((i for i, c in enumerate(rest) if c.get("cell_type") == "markdown"), -1)
    nb.cells = rest[: title + 1] + tagged + rest[title + 1 :]
    _banner_first(rest, tagged[0])
    return nb


_BANNER = re.compile(r"<div class='aanntwin-banner'.*?</div>", re.S)


def _banner_first(cells: list[Any], conclusion: Any) -> None:
    """Move the quick/demo banner (:mod:`~aanntwin.report.banners`, shown by the header) from
    its output to the top of the conclusion's: the report warns before it concludes."""
    for cell in cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/html")
            found = _BANNER.search(text or "") if isinstance(text, str) else None
            if found:
                from nbformat.v4 import new_output  # optional: the notebooks extra

                out["data"]["text/html"] = text.replace(found.group(0), "", 1)
                banner = new_output("display_data", data={"text/html": found.group(0)})
                conclusion["outputs"] = [banner, *conclusion.get("outputs", [])]
                return


# ---- numbers in words ----------------------------------------------------------------------


PREFIXES = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
"""Engineering prefixes for the small quantities of a circuit (pico below the last)."""


def engineering(value: float | None, unit: str, digits: int = 3) -> str:
    """``value`` (in ``unit``) with an engineering prefix: 0.0429 V -> "42.9 mV"."""
    if value is None or not math.isfinite(value):
        return "n/a"
    m = abs(value)
    if m == 0:
        return f"0 {unit}"
    for scale, prefix in PREFIXES:
        if m >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value / 1e-12:.{digits}g} p{unit}"


def volts(v: float | None, digits: int = 3) -> str:
    """A voltage in engineering units: 0.0429 -> "42.9 mV", 1.5 -> "1.5 V", 2e-5 -> "20 µV"."""
    return engineering(v, "V", digits)


def amps(a: float | None, digits: int = 3) -> str:
    """A current in engineering units: 2.5e-6 -> "2.5 µA"."""
    return engineering(a, "A", digits)


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: 0.975 -> "97.5 %"."""
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    return f"{100 * fraction:.{digits}f} %"


def hertz(f: float) -> str:
    """A frequency in engineering units: 1e7 -> "10 MHz"."""
    for scale, unit in ((1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz")):
        if abs(f) >= scale:
            return f"{f / scale:g} {unit}"
    return f"{f:g} Hz"


def _physical(value: float, scale: str | None) -> str:
    """``value`` in multiples of a full scale like ``"1e-05 A"``, in engineering units (the
    bare multiple when the scale is unknown)."""
    number, _, unit = (scale or "").partition(" ")
    try:
        size = float(number)
    except ValueError:
        return f"{value:.3g} of full scale"
    if unit == "A":
        return amps(value * size)
    return volts(value * size) if unit == "V" else f"{value * size:.3g} {unit}".strip()


def weak_model(accuracy: float) -> list[str]:
    """A warning sentence when the ideal model's accuracy (fraction) is below
    :data:`WEAK_ACCURACY`, else none."""
    if accuracy >= WEAK_ACCURACY:
        return []
    return [f"The ideal model reaches only {percent(accuracy)}: it is undertrained, and the "
            "figures derived from it say little about the circuit (train longer)."]  # fmt: skip


# ---- 01 characterization -------------------------------------------------------------------


def characterization_sentences(result: Any) -> list[str]:
    """What notebook 01 found (a :class:`~aanntwin.characterization.pipeline.Characterization`):
    the twin's fidelity, the circuit's noise and mismatch in physical units, what it lacks."""
    out = []
    fid = result.fidelity
    if fid:
        twin, fit = fid["twin"], fid.get("fit", {})
        out.append(
            f"The twin as written reproduces the circuit's {fid['inputs']}-input MAC to "
            f"{twin['rms_pct_fs']:.2g} % of full scale RMS (max {twin['max_pct_fs']:.2g} %) on "
            f"{fid['conditions']} held-out conditions"
            + (f" (its fitted cells summed: {fit['rms_pct_fs']:.2g} %)." if fit else ".")
        )
    else:
        out.append("No MAC data: how well the twin reproduces the circuit is not checked.")
    scales = result.normalization
    for circuit, nz in result.noise.items():
        lo, hi = nz["band_hz"]
        size = _physical(nz["sigma"], scales.get(f"{circuit} noise", {}).get("y"))
        name = {"relu": "ReLU"}.get(circuit, circuit)
        out.append(f"The {name} output noise is {size} RMS over {hertz(lo)} to {hertz(hi)}.")
    mc = result.mismatch
    if mc:
        size = _physical(mc["equivalent_offset_sigma"],
                         scales.get("multiplier montecarlo", {}).get("y"))  # fmt: skip
        out.append(
            f"Over {mc['instances']} Monte Carlo instances the multiplier gain mismatch is "
            f"{100 * mc['gain_sigma']:.2g} % (std) and its equivalent output offset {size} (std)."
        )
    active = [k for k in result.nonidealities.active() if k != "chip_seed"]
    lacking = [f"{x['quantity']} ({x['proposal']})" for x in result.lacking]
    out.append(
        f"The fitted file activates {len(active)} nonidealities"
        + (f"; the twin lacks: {'; '.join(lacking)}." if lacking else ".")
    )
    for line in getattr(result, "warnings", []):
        out.append(f"Warning, {line}.")
    return out


# ---- 02 training ---------------------------------------------------------------------------


def training_sentences(table: Any) -> list[str]:
    """What notebook 02 found, from :func:`~aanntwin.report.notebook.compare_models`'s table
    (rows ``ideal`` and ``hardware-aware``; accuracies in %): the loss under the nonidealities
    and what hardware-aware training wins back, against the draw-to-draw spread."""
    rows = {r["model"]: r for r in table.to_dict(orient="records")}
    ideal, hw = rows["ideal"], rows.get("hardware-aware")
    under, spread = "under nonidealities: mean (%)", "std (%)"
    drop = ideal["ideal test accuracy (%)"] - ideal[under]
    out = [
        f"The ideal model reaches {ideal['ideal test accuracy (%)']:.1f} % test accuracy; under "
        f"the nonidealities {ideal[under]:.1f} % ± {ideal[spread]:.1f} % (mean ± std over "
        f"{ideal['runs']} draws, chip instance {ideal['chip_seed']}), a loss of {drop:.1f} points."
    ]
    out += weak_model(ideal["ideal test accuracy (%)"] / 100)
    if hw is None:
        return out
    gain = hw[under] - ideal[under]
    noise = max(ideal[spread], hw[spread], 0.05)
    out.append(f"The hardware-aware model reaches {hw[under]:.1f} % ± {hw[spread]:.1f} % under "
               f"them ({gain:+.1f} points).")  # fmt: skip
    if gain > 2 * noise:
        out.append("Hardware-aware training pays off for this nonidealities file.")
    elif gain < -2 * noise:
        out.append("Hardware-aware training loses accuracy here: train the ideal model.")
    else:
        out.append("The difference is within the draw-to-draw spread: hardware-aware training "
                   "is not needed for this nonidealities file.")  # fmt: skip
    return out


def explorer_sentences(ideal: Any, under: Any, nl: Any) -> list[str]:
    """What notebook 00 starts from: the ideal model's accuracy with every nonideality off
    (``ideal``) and under the parameters' nonidealities ``nl`` (``under``; EvalResults)."""
    active = [k for k in nl.active() if k != "chip_seed"]
    drop = 100 * (ideal.accuracy - under.accuracy)
    named = ", ".join(active[:6]) + (f" and {len(active) - 6} more" if len(active) > 6 else "")
    out = [
        f"The ideal model reaches {percent(ideal.accuracy)} test accuracy with every nonideality "
        f"off and {percent(under.accuracy)} ± {percent(under.accuracy_std)} (mean ± std over "
        f"{under.runs} draws, chip instance {nl.chip_seed}) under the parameters' "
        f"{len(active)} active nonidealities ({named or 'none'}), a loss of {drop:.1f} points.",
        "Move the controls (live, in JupyterLab or Voila) to see which one costs the accuracy.",
    ]
    return out + weak_model(ideal.accuracy)


# ---- 04 specs ------------------------------------------------------------------------------

_TAP_NAMES = {"input": "input", "conv_out": "conv MAC output", "relu_out": "ReLU output",
              "linear_out": "final MAC output"}  # fmt: skip
_STAGE_NAMES = {"conv": "conv", "conv2d": "conv", "linear": "final stage"}


def _limit(kind: str, value: float | None, unit: str) -> str:
    stage, _, what = kind.rpartition("_")  # mismatch kinds: conv_gain, linear_offset ...
    name = _TAP_NAMES.get(kind) or f"{_STAGE_NAMES.get(stage, stage)} {what}"
    if value is None:
        return f"{name}: none passes"
    if unit.startswith("V"):
        shown = volts(value)
        return f"{name} {shown}" if kind in _TAP_NAMES else f"{name} {shown} (std)"
    return f"{name} {100 * value:.2g} % (std)"


def spec_sentences(spec: Any, chips: Any = None) -> list[str]:
    """What notebook 04 found (a :class:`~aanntwin.studies.specs.SpecResult` and, optionally,
    the :class:`~aanntwin.studies.specs.YieldResult` at the joint limits): whether the joint
    setting meets the target, the chip yield, each limit in mV / % and the weight bits.
    Limits are std on the normalized model, whose stage full scale is 1 V."""
    search, check, target = spec.search, spec.joint_check, spec.search.target
    conf = f"{100 * target.confidence:g} %"
    verb, cmp = ("meets", "≥") if check.passed else ("does NOT meet", "<")
    out = [
        f"The joint setting {verb} the target: {percent(check.quantile)} {cmp} "
        f"{percent(search.threshold)} at {conf} confidence (ideal {percent(search.ideal)}, "
        f"allowed drop {100 * target.max_drop:g} point{'' if target.max_drop == 0.01 else 's'})."
    ] + weak_model(search.ideal)
    if chips is not None:
        out.append(
            f"{percent(chips.yield_)} of {chips.instances} chips pass ({conf} CI "
            f"{percent(chips.low)} to {percent(chips.high)})."
        )
    noise = [t for t in spec.tolerances if t.kind in _TAP_NAMES]
    if noise:
        parts = [_limit(t.kind, spec.joint.get(t.kind), t.unit) for t in noise]
        out.append("Noise may reach (RMS, stage full scale 1 V): " + "; ".join(parts) + ".")
    mismatch = [t for t in spec.tolerances if t.kind not in _TAP_NAMES]
    if mismatch:
        parts = [_limit(t.kind, spec.joint.get(t.kind), t.unit) for t in mismatch]
        out.append("Mismatch may reach (over chips): " + "; ".join(parts) + ".")
    if spec.bits:
        bits = [f"{_STAGE_NAMES.get(k, k)} {b if b is not None else 'more than searched'}"
                for k, b in spec.bits.items()]  # fmt: skip
        out.append("Weight bits needed (each alone, not counting the sign): "
                   + ", ".join(bits) + ".")  # fmt: skip
    return out


def spec_verdict(spec: Any, chips: Any = None) -> str:
    """A one-line verdict of notebook 04: the target met by the joint setting (and the chips)."""
    if not spec.joint_check.passed:
        return "The joint spec limits do NOT meet the target."
    if chips is not None and chips.yield_ < spec.search.target.confidence:
        return "The joint limits meet the target on the draws, but the chip yield falls short."
    return "The spec limits meet the target."
