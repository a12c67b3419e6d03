"""ray_cluster.yaml is a valid cluster-launcher file that installs prunepilot."""

import re
from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.helpers import REPO


def test_cluster_file_passes_rays_schema_and_installs_prunepilot():
    text = (REPO / "ray_cluster.yaml").read_text()
    config = yaml.safe_load(text)
    validate_config(prepare_config(config))  # raises on an unknown or malformed key
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    assert any("pip install" in c and "-e '.[cluster]'" in c for c in config["setup_commands"])
    # Every key is commented: each top-level key has a comment line right above it.
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^\s*[\w-]+:", line):
            above = lines[index - 1].strip()
            assert above.startswith("#"), f"key without a comment: {line}"
    assert Path(REPO / "README.md").read_text().count("ray job submit") >= 1
