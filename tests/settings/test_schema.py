"""The JSON Schema of job files (``prunepilot schema``): it accepts the example job file, and it
agrees with the job-file loader on every key, value kind and range."""

from __future__ import annotations

import json

import jsonschema
import pytest
import tomllib

from prunepilot.errors import UsageError
from prunepilot.settings import settings_of
from prunepilot.settings.jobfile import load_job_file
from prunepilot.spec import JobSpec
from tests.helpers import REPO, run_cli

EXAMPLE = REPO / "examples" / "digits.toml"
KEYED = [s for s in settings_of(JobSpec) if s.key]
#: A value of another kind than each kind's.
WRONG_KIND = {"str": 3, "int": "many", "float": "high", "bool": "yes", "int_list": ["a"], "str_list": "l1"}


@pytest.fixture(scope="module")
def schema() -> dict:
    from prunepilot.write_docs import schema_text

    return json.loads(schema_text())


def nested(key: str, value: object) -> dict:
    section, _, name = key.rpartition(".")
    return {section: {name: value}} if section else {name: value}


def test_prunepilot_schema_prints_a_schema_that_accepts_the_example_job_file(capsys):
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft7Validator.check_schema(schema)
    example = tomllib.loads(EXAMPLE.read_text())
    assert list(jsonschema.Draft7Validator(schema).iter_errors(example)) == []
    assert example["budget"] == "2x"


@pytest.mark.parametrize(
    "document",
    [
        {"trials": "many"},  # a wrong type
        {"space": {"ratio_max": 0.99}},  # out of range
        {"space": {"criteria": ["l1", "magic"]}},  # not a choice
        {"budgte": "2x"},  # an unknown key
        {"modle": {"task": "digits"}},  # an unknown section
        {"model": {"device": "gpu0"}},  # not the pattern
    ],
)
def test_the_schema_rejects_what_the_job_refuses(schema, document):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


@pytest.mark.parametrize("declared", KEYED, ids=[s.key for s in KEYED])
def test_schema_and_loader_agree_on_each_key(schema, declared, tmp_path):
    """Its default (or example) passes both; a value of the wrong kind fails both."""
    good = declared.default if declared.default is not None else declared.example
    assert good is not None, f"{declared.name} needs an example value"
    good = list(good) if isinstance(good, tuple) else good
    jsonschema.validate(nested(declared.key, good), schema)
    job = tmp_path / "job.toml"
    section, _, name = declared.key.rpartition(".")
    bad = WRONG_KIND[declared.kind]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(nested(declared.key, bad), schema)
    job.write_text((f"[{section}]\n" if section else "") + f"{name} = {json.dumps(bad)}\n")
    with pytest.raises(UsageError, match=f"{declared.key}: must be"):
        load_job_file(job, settings_of(JobSpec))
