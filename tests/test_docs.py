"""The README stays true: every nonideality field, command and Makefile target it names exists."""

import re

from aanntwin.cli import build_parser
from aanntwin.config import ModelParams, Nonidealities, TrainParams
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_config_field_is_documented():
    for cls in (Nonidealities, ModelParams, TrainParams):
        for name in cls.field_names():
            assert f"`{name}`" in README or f'"{name}"' in README, name


def test_every_command_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"aanntwin {name}" in README, name


def test_the_two_commands_exist_in_the_makefile_and_ci():
    makefile = (REPO / "Makefile").read_text()
    for target in re.findall(r"make (\w+)", README):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _all_options(parser) -> set[str]:
    """Every option string of a parser and its subcommands, recursively."""
    import argparse

    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _all_options(sub)
    return found


def test_differences_from_the_reference_tool_name_flags_that_exist():
    """Each departure a porting user trips over is listed, and every flag named to restore the
    reference behaviour is a real option."""
    section = README.split("## Differences from the reference tool", 1)[1].split("\n## ", 1)[0]
    for topic in ("noise-sweep training noise", "hidden-stage ReLUs", "normalization full scale",
                  "weight initialization", "training defaults", "kind names"):  # fmt: skip
        assert topic in section, topic
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", section))
    assert {"--train-kinds", "--signed-max", "--kinds", "--chips"} <= flags
    assert flags <= _all_options(build_parser()), flags - _all_options(build_parser())
