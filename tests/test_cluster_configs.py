"""The Ray cluster launcher configs in cluster/: each passes Ray's own validation, installs the
project on every node, and points every node at an MLflow server and at shared storage.

Validation is Ray's, as `ray up` does it before it contacts a provider: `prepare_config` (merges
the provider's defaults, folds `setup_commands` into the head's and the workers' setup) and then
`validate_config` (jsonschema against ray/autoscaler/ray-schema.json, plus Ray's checks across
keys). The provider's bootstrap, which talks to AWS, is not run: nothing here uses the network.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "cluster").glob("*.yaml"))
SCHEMA = Path(ray.autoscaler.__file__).with_name("ray-schema.json")
ENV_FILE = "~/xlt-env.sh"
INSTALL = re.compile(r"pip install\b.* -e ~/xlt-search(\s|$)")


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def load(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict), f"{path.name}: not a mapping"
    return raw


def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    """The config as `ray up` validates it."""
    return prepare_config(copy.deepcopy(raw))


def all_commands(config: dict[str, Any]) -> list[str]:
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    commands = [command for key in keys for command in config.get(key) or []]
    for node_type in (config.get("available_node_types") or {}).values():
        for key in ("initialization_commands", "worker_setup_commands"):
            commands += node_type.get(key) or []
    return commands


def env_exports(config: dict[str, Any]) -> dict[str, str]:
    """The variables the setup commands write to the environment file every node sources."""
    writers = [c for c in config["setup_commands"] if f"cat > {ENV_FILE} <<" in c]
    assert len(writers) == 1, f"one setup command should write {ENV_FILE}"
    exports = re.findall(r"^export (\w+)=(.*)$", writers[0], flags=re.MULTILINE)
    return {name: value.strip('"') for name, value in exports}


def worker_setups(config: dict[str, Any]) -> list[list[str]]:
    """The setup commands of each worker node type (a node type's own list replaces the global)."""
    setups = [config["worker_setup_commands"]]
    for name, node_type in config["available_node_types"].items():
        if name != config["head_node_type"] and "worker_setup_commands" in node_type:
            setups.append(node_type["worker_setup_commands"])
    return setups


def test_there_are_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"aws-gpu.yaml", "on-prem.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_validates_against_rays_schema(path: Path) -> None:
    raw = load(path)
    jsonschema.validate(raw, json.loads(SCHEMA.read_text()))  # the file as written
    validate_config(prepared(raw))  # what `ray up` checks, defaults filled in


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_a_misspelled_key_fails_rays_validation(path: Path) -> None:
    raw = load(path)
    validate_config(prepared(raw))
    typo = dict(raw)
    typo["max_worker"] = typo.pop("max_workers", 2)
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepared(typo))


def test_a_misspelled_node_type_key_fails_rays_validation() -> None:
    raw = load(ROOT / "cluster" / "aws-gpu.yaml")
    typo = copy.deepcopy(raw)
    node_type = typo["available_node_types"]["gpu_worker"]
    node_type["min_worker"] = node_type.pop("min_workers")
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepared(typo))


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_installs_the_project_on_every_node(path: Path) -> None:
    raw = load(path)
    assert raw["file_mounts"]["~/xlt-search"] == ".", "the working copy goes to ~/xlt-search"
    config = prepared(raw)
    for setup in [config["head_setup_commands"], *worker_setups(config)]:
        installs = [i for i, c in enumerate(setup) if INSTALL.search(c)]
        torch = [i for i, c in enumerate(setup) if re.search(r"pip install\b.* torch\b", c)]
        assert installs, f"no `pip install -e ~/xlt-search` in {setup}"
        assert torch and torch[0] < installs[0], "torch is installed before the project"
        pinned = [c for c in setup if f"ray[default,tune]=={ray.__version__}" in c]
        assert pinned, f"Ray is pinned to the version here ({ray.__version__})"


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_every_node_starts_ray_with_the_environment(path: Path) -> None:
    config = prepared(load(path))
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts, f"{key}: no `ray start`"
        for command in config[key]:
            if re.search(r"\bray (start|stop)\b", command):
                assert command.startswith(f". {ENV_FILE} &&"), f"{key}: {command!r}"
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    worker = next(c for c in config["worker_start_ray_commands"] if "ray start" in c)
    assert "--address=$RAY_HEAD_IP:6379" in worker


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_mlflow_is_an_http_server(path: Path) -> None:
    raw = load(path)
    uri = env_exports(raw).get("MLFLOW_TRACKING_URI", "")
    assert re.fullmatch(r"http://\S+:5000", uri), uri
    server = [c for c in raw["head_start_ray_commands"] if "mlflow server" in c]
    assert server and "--host 0.0.0.0 --port 5000" in server[0]


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_storage_and_cache_are_shared(path: Path) -> None:
    raw, text = load(path), path.read_text()
    assert re.search(r"storage_path: (s3://\S+|/mnt/\S+)", text), "comments name the storage"
    cache = env_exports(raw).get("XLT_SEARCH_CACHE", "")
    mount = re.match(r"/mnt/[^/]+", cache)
    assert mount, f"XLT_SEARCH_CACHE={cache!r} is not on a mounted share"
    init = " ".join(raw["initialization_commands"])
    assert f"mountpoint -q {mount.group(0)}" in init, "the share is mounted or checked first"
    assert "HF_HOME" in env_exports(raw)


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_token_authentication_stays_on(path: Path) -> None:
    raw = load(path)
    assert env_exports(raw).get("RAY_AUTH_MODE") == "token"
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_MODE=disabled" not in path.read_text()


def test_gpu_workers_are_up_from_the_start() -> None:
    # xlt-search refuses a spec that asks for a GPU while the cluster has none, so an autoscaling
    # GPU type starts with one node.
    config = prepared(load(ROOT / "cluster" / "aws-gpu.yaml"))
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "trials stay off the head"
    gpu_types = [t for t in config["available_node_types"].values() if t["resources"].get("GPU")]
    assert gpu_types and all(t["min_workers"] >= 1 for t in gpu_types)
    assert all(t["max_workers"] > t["min_workers"] for t in gpu_types), "they autoscale"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_commands_are_valid_shell(path: Path) -> None:
    for command in all_commands(prepared(load(path))):
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, f"{command!r}: {check.stderr}"
