"""The Grafana dashboard ConfigMap: off by default, labelled for Grafana's sidecar, and every
query names a metric the server exports (modelplane's registry plus vLLM's metric names)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from modelplane.server.metrics import ServerMetrics
from tests.chart.dashboard_queries import base_name, load_dashboard, metric_names, queries
from tests.chart.delivery_checks import RELEASE_NAMESPACE, by_kind, one, validate_kubernetes

ENABLED = {"grafanaDashboard": {"enabled": True}}


def vllm_metric_names() -> set[str]:
    """The `vllm:*` names the installed vLLM defines (its v1 metrics loggers)."""
    import vllm

    names: set[str] = set()
    for source in (Path(vllm.__file__).parent / "v1" / "metrics").glob("*.py"):
        names |= set(re.findall(r'"(vllm:[a-z_:]+)"', source.read_text(encoding="utf-8")))
    return names


def modelplane_sample_names() -> set[str]:
    """The sample names modelplane's own metrics expose (counter `_total`, histogram `_bucket`...)."""
    registry = CollectorRegistry()
    ServerMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return names


def test_no_dashboard_by_default(render: Any) -> None:
    assert not by_kind(render({}), "ConfigMap")


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar(render: Any) -> None:
    configmap = one(render(ENABLED), "ConfigMap")
    validate_kubernetes(configmap)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == RELEASE_NAMESPACE
    dashboard = json.loads(configmap["data"]["modelplane.json"])
    assert dashboard == load_dashboard()
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "deployment"}
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("tokens/s", "time to first token", "inter-token", "queue", "kv-cache", "api key"):
        assert topic in titles, topic
    assert "errors" in titles


def test_dashboard_namespace_labels_and_annotations_are_configurable(render: Any) -> None:
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"dashboards": "platform"},
            "annotations": {"grafana_folder": "modelplane"},
        }
    }
    metadata = one(render(values), "ConfigMap")["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["dashboards"] == "platform"
    assert metadata["labels"]["grafana_dashboard"] == "1"  # helm merges maps: set null to drop
    assert metadata["annotations"] == {"grafana_folder": "modelplane"}


def test_every_dashboard_query_names_a_metric_the_server_exports() -> None:
    modelplane = modelplane_sample_names()
    vllm = vllm_metric_names()
    assert "vllm:kv_cache_usage_perc" in vllm  # the scan found vLLM's definitions
    exprs = list(queries(load_dashboard()))
    assert len(exprs) >= 12
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        for name in names:
            if name.startswith("modelplane_"):
                assert name in modelplane, f"{name} (in {expr!r}) is not a modelplane metric"
            else:
                assert name in vllm or base_name(name) in vllm, f"{name} is not vLLM's"


def test_every_dashboard_query_filters_by_the_deployment_variables() -> None:
    for expr in queries(load_dashboard()):
        if "label_values" in expr:
            continue
        assert 'namespace=~"$namespace"' in expr and 'service=~"$deployment"' in expr, expr
