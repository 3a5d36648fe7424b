"""cluster.yaml is a valid Ray cluster-launcher file and keeps token authentication on."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_validates_against_rays_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # defaults filled as `ray up` does; raises on a violation
    import pytest

    with pytest.raises(Exception, match="bogus"):  # the check is real: an unknown key is refused
        validate_config(prepare_config({**config, "bogus": 1}))
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    assert config["auth"]["ssh_user"]
    assert any("pip install" in c and "nova-ray" in c for c in config["setup_commands"])


def test_token_auth_is_handed_to_every_node_and_dashboard_is_local() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    text = (ROOT / "cluster.yaml").read_text()
    assert "~/.ray/auth_token" in config["file_mounts"]
    for cmd in config["head_start_ray_commands"][-1:] + config["worker_start_ray_commands"][-1:]:
        assert "RAY_AUTH_MODE=token" in cmd
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]
    assert (
        "RAY_AUTH_MODE=disabled" not in text
        and "RAY_AUTH_MODE=disabled" not in (ROOT / "README.md").read_text()
    )


def _rsync_excluded(path: str, pattern: str) -> bool:
    """rsync's rule for an exclude pattern: one with a leading "/" matches from the transfer's
    root; one without a "/" inside matches a name at any depth; "**" crosses folders."""
    from fnmatch import fnmatch

    parts = path.split("/")
    if pattern.startswith("/"):
        anchored = pattern[1:].rstrip("/")
        return any(fnmatch("/".join(parts[: k + 1]), anchored) for k in range(len(parts)))
    if "/" not in pattern.rstrip("/"):
        return any(fnmatch(part, pattern.rstrip("/")) for part in parts)
    return any(fnmatch("/".join(parts[: k + 1]), pattern) for k in range(len(parts)))


def test_the_nodes_get_every_file_of_the_package() -> None:
    """`rsync_exclude: ["models"]` also dropped nova_ray/models/ (rsync matches a bare name at any
    depth): `nova-ray` on a node failed with "No module named 'nova_ray.models'"."""
    import subprocess

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    patterns = config["rsync_exclude"]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (an sdist): the package's files on disk
        tracked = [p.relative_to(ROOT).as_posix() for p in (ROOT / "nova_ray").rglob("*.py")]
    needed = [f for f in tracked if f.startswith(("nova_ray/", "configs/")) or f == "pyproject.toml"]
    assert any(f.startswith("nova_ray/models/") for f in needed)
    dropped = [f for f in needed if any(_rsync_excluded(f, p) for p in patterns)]
    assert not dropped, dropped
    # and what they are there for is still left out: the venv, the data and the model store
    for folder in (".venv/bin/python", "data/demo/demand.parquet", "models/items.parquet"):
        assert any(_rsync_excluded(folder, p) for p in patterns), folder
    assert _rsync_excluded("nova_ray/models/ets.py", "models")  # the rule this guards against


def test_gpu_nodes_get_the_cuda_tensorflow_after_the_install() -> None:
    """The install requires tensorflow-cpu: run again on each `ray up`, it replaced the CUDA
    build the README told GPU nodes to install, and the LSTM quietly trained on CPU."""
    steps = yaml.safe_load((ROOT / "cluster.yaml").read_text())["setup_commands"]
    install = next(i for i, c in enumerate(steps) if "pip install" in c and "nova-ray" in c)
    gpu = next(i for i, c in enumerate(steps) if "nvidia-smi" in c)
    assert gpu > install and "tensorflow[and-cuda]" in steps[gpu] and "uninstall" in steps[gpu]
