"""Declarations: a setting's kind, flag and checks come from its one declaration; adding a setting
is one declaration, and every surface (flags, job files, validation, schema, reference) has it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import jsonschema
import pytest

from prunepilot.errors import UsageError
from prunepilot.settings import Integer, Number, OneOf, command_line, field_problems, setting, settings_of
from prunepilot.settings.flags import add_flags, flag_help, given_settings
from prunepilot.settings.jobfile import load_job_file
from prunepilot.settings.schema import job_file_schema
from prunepilot.spec import SECTIONS, JobSpec


@dataclass(frozen=True)
class Toy:
    steps: int = setting(3, "steps to take", key="run.steps", check=Integer(0))
    rate: float | None = setting(
        None, "a rate", key="run.rate", check=Number(0, 1), default_text="the task's"
    )  # fmt: skip
    mode: str = setting("fast", "how to run", key="mode", check=OneOf(("fast", "slow")))
    verbose: bool = setting(False, "say more", key=None)
    screen: bool = setting(True, "screen first", key="run.screen")
    names: list[str] | None = setting(None, "names", key="run.names")
    shape: tuple[int, ...] | None = setting(None, "a shape", key="run.shape")


def test_kinds_flags_and_order_come_from_the_annotations_and_names():
    declared = {s.name: s for s in settings_of(Toy)}
    names = ["steps", "rate", "mode", "verbose", "screen", "names", "shape"]
    assert [s.name for s in settings_of(Toy)] == names
    assert (declared["rate"].kind, declared["rate"].optional) == ("float", True)
    assert declared["names"].kind == "str_list" and declared["shape"].container is tuple
    assert declared["verbose"].flag == "--verbose" and declared["screen"].flag == "--no-screen"
    assert declared["steps"].section == "run" and declared["mode"].section == ""


def test_a_type_no_job_file_can_hold_is_refused_when_declared():
    @dataclass(frozen=True)
    class Bad:
        table: dict = setting(None, "a table", key="table")

    with pytest.raises(TypeError, match="'table'"):
        settings_of(Bad)


def test_each_wrong_value_gets_the_standard_line_naming_the_keyword_from_python_the_flag_from_the_cli():
    toy = Toy(steps=-1, rate=2.0, mode="medium", verbose="yes")  # type: ignore[arg-type]
    lines = [str(p) for p in field_problems(toy)]
    assert lines == [
        "The 'steps' parameter of JobSpec must be an integer >= 0. Got -1 instead.",
        "The 'rate' parameter of JobSpec must be in [0, 1]. Got 2.0 instead.",
        "The 'mode' parameter of JobSpec must be one of ['fast', 'slow']. Got 'medium' instead.",
        "The 'verbose' parameter of JobSpec must be true or false. Got 'yes' instead.",
    ]
    with command_line():
        line = str(field_problems(Toy(steps=-1))[0])
    assert line.startswith("The 'steps' parameter of JobSpec (--steps) must")
    assert field_problems(Toy()) == []


def test_flags_take_their_kind_help_default_and_choices_from_the_declaration():
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_flags(parser, settings_of(Toy), {"": "top", "run": "running"})
    args = parser.parse_args(
        ["--steps", "4", "--mode", "slow", "--no-screen", "--names", "a, b,", "--verbose"]
    )
    assert given_settings(args, settings_of(Toy)) == {
        "steps": 4, "mode": "slow", "screen": False, "names": ["a", "b"], "verbose": True,
    }  # fmt: skip
    assert given_settings(parser.parse_args([]), settings_of(Toy)) == {}  # only the flags given
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "medium"])  # argparse's choices
    declared = {s.name: s for s in settings_of(Toy)}
    assert flag_help(declared["steps"]) == "steps to take (default 3)"
    assert flag_help(declared["rate"]) == "a rate (default: the task's)"
    assert "--no-screen turns it off" in flag_help(declared["screen"])


def test_adding_a_setting_is_one_declaration_and_every_surface_has_it(tmp_path):
    """A throwaway setting of a job, declared once: its flag, job-file key, check, schema entry and
    standard error exist without another line anywhere."""

    @dataclass(frozen=True)
    class Extended(JobSpec):
        warmup_steps: int = setting(5, "warm-up steps before the search", key="finetune.warmup_steps",
                                    check=Integer(0, 1000))  # fmt: skip

    declared = settings_of(Extended)
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_flags(parser, declared, SECTIONS)
    assert given_settings(parser.parse_args(["--warmup-steps", "7"]), declared) == {"warmup_steps": 7}
    job = tmp_path / "job.toml"
    job.write_text('budget = "2x"\n[finetune]\nwarmup_steps = 2000\n')
    loaded = load_job_file(job, declared)
    assert loaded.values == {"budget": "2x", "warmup_steps": 2000} and loaded.origin["warmup_steps"] == (
        "finetune.warmup_steps"
    )
    problems = Extended(**loaded.values).problems()
    assert [str(p) for p in problems] == [
        "The 'warmup_steps' parameter of JobSpec must be an integer in [0, 1000]. Got 2000 instead."
    ]
    schema = job_file_schema(declared, SECTIONS)
    assert schema["properties"]["finetune"]["properties"]["warmup_steps"]["maximum"] == 1000
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"finetune": {"warmup_steps": 2000}}, schema)
    job.write_text('budget = "2x"\n[finetune]\nwarmup_steps = "many"\n')
    with pytest.raises(UsageError, match="finetune.warmup_steps: must be an integer. Got 'many' instead."):
        load_job_file(job, declared)
