"""The contract with the operator, server side: the port, flags, probe paths and metric it uses."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from modelplane import contract
from modelplane.server import cli
from modelplane.server.app import build_app
from modelplane.server.metrics import ServerMetrics


def test_the_server_defines_every_flag_the_operator_sets() -> None:
    options = {option for action in cli.build_parser()._actions for option in action.option_strings}
    assert set(contract.SERVER_FLAGS) <= options


def test_the_server_listens_on_the_port_the_operator_probes() -> None:
    assert cli.parse_args([], {}).port == contract.SERVER_PORT


def test_the_server_routes_the_probe_and_metrics_paths() -> None:
    settings = cli.build_settings(cli.parse_args(["--model", "/models/x"], {}))
    paths = {getattr(route, "path", None) for route in build_app(settings).routes}
    assert {contract.HEALTH_PATH, contract.READY_PATH, contract.METRICS_PATH} <= paths


def test_the_server_exports_the_metric_the_autoscalers_query() -> None:
    registry = CollectorRegistry()
    ServerMetrics(registry)
    assert registry.get_sample_value(contract.IN_FLIGHT_METRIC) == 0.0
