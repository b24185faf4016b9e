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
