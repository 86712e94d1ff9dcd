"""Flags and env vars become one typed OperatorSettings."""

import pytest

from modelplane.operator.cli import settings_from_args


def test_namespaces_are_repeatable(monkeypatch):
    monkeypatch.delenv("MODELPLANE_NAMESPACES", raising=False)
    settings = settings_from_args(["--namespace", "ml", "-n", "team-*", "--default-image", "img:2"])
    assert settings.namespaces == ("ml", "team-*")
    assert settings.all_namespaces is False
    assert settings.default_image == "img:2"


def test_no_namespace_means_the_whole_cluster(monkeypatch):
    monkeypatch.delenv("MODELPLANE_NAMESPACES", raising=False)
    settings = settings_from_args([])
    assert settings.all_namespaces is True
    assert settings_from_args(["--all-namespaces"]).all_namespaces is True


def test_env_provides_defaults(monkeypatch):
    monkeypatch.setenv("MODELPLANE_NAMESPACES", "a,b")
    monkeypatch.setenv("MODELPLANE_DEFAULT_IMAGE", "env:1")
    settings = settings_from_args(["--liveness", "", "--metrics-port", "0", "--no-leader-elect"])
    assert settings.namespaces == ("a", "b")
    assert settings.default_image == "env:1"
    assert settings.liveness_endpoint is None
    assert settings.metrics_port == 0
    assert settings.leader_elect is False


def test_fetch_progress_interval_takes_durations_from_flag_or_env(monkeypatch):
    monkeypatch.delenv("MODELPLANE_FETCH_PROGRESS_INTERVAL", raising=False)
    assert settings_from_args([]).fetch_progress_seconds == 10.0
    assert settings_from_args(["--fetch-progress-interval", "500ms"]).fetch_progress_seconds == 0.5
    monkeypatch.setenv("MODELPLANE_FETCH_PROGRESS_INTERVAL", "30s")
    assert settings_from_args([]).fetch_progress_seconds == 30.0


def test_max_workers_comes_from_flag_or_env(monkeypatch):
    monkeypatch.delenv("MODELPLANE_MAX_WORKERS", raising=False)
    assert settings_from_args([]).max_workers == 256
    assert settings_from_args(["--max-workers", "32"]).max_workers == 32
    monkeypatch.setenv("MODELPLANE_MAX_WORKERS", "64")
    assert settings_from_args([]).max_workers == 64
    assert settings_from_args(["--max-workers", "8"]).max_workers == 8


def test_kube_api_qps_and_burst_come_from_flag_or_env(monkeypatch):
    monkeypatch.delenv("MODELPLANE_KUBE_API_QPS", raising=False)
    monkeypatch.delenv("MODELPLANE_KUBE_API_BURST", raising=False)
    settings = settings_from_args([])
    assert (settings.kube_api_qps, settings.kube_api_burst) == (50.0, 100)
    flags = settings_from_args(["--kube-api-qps", "20", "--kube-api-burst", "30"])
    assert (flags.kube_api_qps, flags.kube_api_burst) == (20.0, 30)
    monkeypatch.setenv("MODELPLANE_KUBE_API_QPS", "5")
    monkeypatch.setenv("MODELPLANE_KUBE_API_BURST", "10")
    assert (settings_from_args([]).kube_api_qps, settings_from_args([]).kube_api_burst) == (5, 10)
    assert settings_from_args(["--kube-api-qps", "0"]).kube_api_qps == 0  # no limit


def test_a_zero_burst_with_a_qps_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("MODELPLANE_KUBE_API_QPS", raising=False)
    with pytest.raises(SystemExit) as info:
        settings_from_args(["--kube-api-burst", "0"])
    assert info.value.code == 2
    assert "--kube-api-burst must be at least 1" in capsys.readouterr().err
