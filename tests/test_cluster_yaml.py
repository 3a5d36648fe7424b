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
