"""`--api-server-count N`: N front-end processes accept on one port over one engine core, and
/metrics speaks for all of them whichever answers."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from modelplane.contract import IN_FLIGHT_METRIC
from modelplane.server import api_servers, cli
from tests.server.server_harness import metric_samples, metric_value, start_server

MODEL = "smollm2-135m-instruct"


def test_api_server_count_is_vllms_flag_and_defaults_to_one() -> None:
    assert cli.build_settings(cli.parse_args(["--model", "/m"], {})).api_server_count == 1
    settings = cli.build_settings(cli.parse_args(["--model", "/m", "--api-server-count", "3"], {}))
    assert settings.api_server_count == 3
    from_env = cli.parse_args(["--model", "/m"], {"MODELPLANE_API_SERVER_COUNT": "2"})
    assert cli.build_settings(from_env).api_server_count == 2


def test_api_server_count_below_one_is_refused() -> None:
    with pytest.raises(SystemExit, match="--api-server-count must be >= 1"):
        cli.build_settings(cli.parse_args(["--model", "/m", "--api-server-count", "0"], {}))


def test_each_front_end_takes_its_share_of_the_pods_admission_limits() -> None:
    args = ["--model", "/m", "--api-server-count", "3", "--max-concurrent-requests", "256"]
    settings = cli.build_settings(cli.parse_args([*args, "--max-queued-requests", "10"], {}))
    share = api_servers.front_end_settings(settings)
    assert (share.max_concurrent_requests, share.max_queued_requests) == (86, 4)
    assert share.rate_limit_requests_per_minute == settings.rate_limit_requests_per_minute
    unlimited = cli.parse_args(["--model", "/m", "--api-server-count", "2"], {})
    unlimited.max_concurrent_requests = unlimited.max_queued_requests = 0
    share = api_servers.front_end_settings(cli.build_settings(unlimited))
    assert (share.max_concurrent_requests, share.max_queued_requests) == (0, 0)
    one = cli.build_settings(cli.parse_args(["--model", "/m"], {}))
    assert api_servers.front_end_settings(one) == one


def listening_processes(root: psutil.Process, port: int) -> list[psutil.Process]:
    """The processes of the server's tree that hold a listening socket on `port`."""
    found = []
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == port
                for c in process.net_connections(kind="tcp")
            ):
                found.append(process)
    return found


def engine_cores(root: psutil.Process) -> list[psutil.Process]:
    """vLLM titles its engine core process `VLLM::EngineCore`."""
    cores = []
    for process in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "EngineCore" in " ".join(process.cmdline()):
                cores.append(process)
    return cores


def client_connections(process: psutil.Process, port: int) -> int:
    """How many established client connections on `port` the process holds right now."""
    return sum(
        c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        for c in process.net_connections(kind="tcp")
    )


def serving_processes(front_ends: list[psutil.Process], port: int) -> set[int]:
    """The front ends holding an established client connection on `port` right now."""
    return {p.pid for p in front_ends if client_connections(p, port)}


def scrape(front_ends: list[psutil.Process], port: int) -> tuple[int, str]:
    """One /metrics scrape on a fresh connection: the pid of the front end that answered, the text."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode()
        assert response.status == 200, text
        assert connection.sock is not None
        local_port = connection.sock.getsockname()[1]
        answered = [
            p.pid
            for p in front_ends
            if any(c.raddr and c.raddr.port == local_port for c in p.net_connections(kind="tcp"))
        ]
    finally:
        connection.close()
    assert len(answered) == 1
    return answered[0], text


def scrapes_from_every_front_end(front_ends: list[psutil.Process], port: int) -> list[str]:
    """Scrapes until each front end has answered at least once (bounded), their texts in order."""
    texts, answered = [], set()
    for _ in range(40):
        pid, text = scrape(front_ends, port)
        texts.append(text)
        answered.add(pid)
        if answered == {p.pid for p in front_ends} and len(texts) >= 4:
            return texts
    raise AssertionError(f"only front ends {answered} answered 40 scrapes")


def scrape_until(
    front_ends: list[psutil.Process], port: int, settled: Callable[[str], bool], what: str
) -> None:
    """Scrapes until one satisfies `settled` (bounded).

    A front end counts a request once its handler has returned, a moment after the client
    read `[DONE]` (or closed the stream): on a loaded machine another front end can answer a
    scrape in that moment and show the pod's figures one request behind.
    """
    deadline = time.monotonic() + 60
    while not settled(text := scrape(front_ends, port)[1]):
        assert time.monotonic() < deadline, f"{what}; last scrape:\n{text[-3000:]}"
        time.sleep(0.2)


def connections_after_a_burst(front_ends: list[psutil.Process], port: int, count: int) -> list[int]:
    """Opens `count` connections at once, each answered once: how many each front end holds."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        for sock in sockets:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        return [client_connections(p, port) for p in front_ends]
    finally:
        for sock in sockets:
            sock.close()


Stream = tuple[openai.OpenAI, Any]


def next_chunk_state(stream: Any) -> str:
    """`streaming` when the stream's next chunk is a token, else how it ended."""
    try:
        chunk = next(iter(stream))
    except StopIteration:
        return "ended"
    except (openai.APIError, httpx.HTTPError) as error:  # an error event; a cut connection
        return f"{type(error).__name__}: {error}"
    return "streaming" if chunk.choices else f"ended with {chunk.model_dump_json()}"


def streams_on_every_front_end(
    server: Any, front_ends: list[psutil.Process], port: int, minimum: int, **create: Any
) -> list[Stream]:
    """At least `minimum` chat streams, one connection each, opened until both front ends serve."""
    opened: list[Stream] = []
    all_pids = {p.pid for p in front_ends}
    while len(opened) < minimum or serving_processes(front_ends, port) != all_pids:
        assert len(opened) < 32, "the kernel sent every connection to one front end"
        client = openai.OpenAI(base_url=server.api_url, api_key="none", max_retries=0, timeout=300)
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count to five."}],
            stream=True,
            stream_options={"include_usage": True},
            **create,
        )
        opened.append((client, stream))
    return opened


@pytest.mark.slow
def test_two_front_ends_share_the_port_and_stream_from_one_engine(tmp_path: Path) -> None:
    server = start_server(tmp_path, ["--api-server-count", "2"])
    try:
        root = psutil.Process(server.process.pid)
        port = int(server.base_url.rsplit(":", 1)[1])
        front_ends = [p for p in listening_processes(root, port) if p.pid != root.pid]
        assert len(front_ends) == 2, server.log_text()[-3000:]
        assert len(engine_cores(root)) == 1
        chat = {"route": "/v1/chat/completions", "model": MODEL, "status": "200"}
        # A burst of connections is shared out: the front end with the fewest open ones takes
        # the next (vLLM's rule). Whichever woke first used to take them all (16/0, 14/2).
        split = connections_after_a_burst(front_ends, port, 16)
        assert sum(split) == 16 and min(split) >= 4, split
        _, before = scrape(front_ends, port)

        # Short streams, each on its own connection, spread over both front ends.
        streams = streams_on_every_front_end(server, front_ends, port, 8, max_tokens=8)
        completion_tokens = 0
        for client, stream in streams:
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
            completion_tokens += chunks[-1].usage.completion_tokens
            client.close()

        # Whichever front end answers, counters are the pod's sums: modelplane's and vLLM's.
        def figures(text: str) -> tuple[float, ...]:
            return (
                metric_value(text, "modelplane_requests_total", **chat),
                metric_value(text, "modelplane_completion_tokens_total", model=MODEL),
                metric_value(text, "vllm:generation_tokens_total"),
                metric_value(text, IN_FLIGHT_METRIC),
            )

        expected = (
            len(streams),
            metric_value(before, "modelplane_completion_tokens_total", model=MODEL)
            + completion_tokens,
            metric_value(before, "vllm:generation_tokens_total") + completion_tokens,
            0,
        )
        scrape_until(
            front_ends,
            port,
            lambda text: figures(text) == expected,
            f"the finished streams are never all counted: expected {expected}",
        )
        for text in scrapes_from_every_front_end(front_ends, port):
            assert figures(text) == expected

        # Long streams held open on both front ends: each scrape reports all of them in
        # flight (the autoscaler's figure), and vLLM's engine gauges once, not per process.
        held = streams_on_every_front_end(
            server, front_ends, port, 4, max_tokens=4000, extra_body={"ignore_eos": True}
        )
        for _, stream in held:
            next(iter(stream))  # generating
        texts = scrapes_from_every_front_end(front_ends, port)
        # Still streaming after the scrapes, so all were running during them; if not, say how
        # each ended after the server's log (last, where a CI log's tail shows them).
        states = [next_chunk_state(stream) for _, stream in held]

        def report() -> str:  # read only when an assertion fails
            return f"{server.log_text()[-3000:]}\nheld streams after the scrapes: {states}"

        for text in texts:
            assert metric_samples(text, IN_FLIGHT_METRIC) == [({}, float(len(held)))], report()
            engine_requests = metric_value(text, "vllm:num_requests_running") + metric_value(
                text, "vllm:num_requests_waiting"
            )
            assert engine_requests == len(held), report()
            assert 'pid="' not in text
        for client, stream in held:
            stream.close()
            client.close()
        scrape_until(
            front_ends,
            port,
            lambda text: metric_value(text, IN_FLIGHT_METRIC) == 0,
            "cancelled streams still counted in flight",
        )
    finally:
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(120)
        server.stop()
    assert code == 0
    assert not [p for p in front_ends if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_a_front_end_that_ends_on_its_own_stops_the_pod_with_exit_code_1(tmp_path: Path) -> None:
    """SIGTERM to one front end, not the pod: it drains and exits 0. The pod does not serve on
    with one front end; it stops the other and the engine, and exits non-zero."""
    server = start_server(tmp_path, ["--api-server-count", "2"])
    try:
        root = psutil.Process(server.process.pid)
        port = int(server.base_url.rsplit(":", 1)[1])
        front_ends = [p for p in listening_processes(root, port) if p.pid != root.pid]
        cores = engine_cores(root)
        assert (len(front_ends), len(cores)) == (2, 1), server.log_text()[-3000:]
        stopped = front_ends[0]
        stopped.terminate()
        code = server.process.wait(120)
        left = [
            p
            for p in [*front_ends, *cores]
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]
    finally:
        server.stop()
    log = server.log_text()
    assert code == 1, log[-3000:]
    assert f"(pid {stopped.pid}) exited with code 0 while the pod was serving" in log
    assert not left


Probe = tuple[int, int, dict[str, Any]]


def holds_client_port(process: psutil.Process, client_port: int) -> bool:
    """`process` holds the server side of the connection from `client_port` (False once gone)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        connections = process.net_connections(kind="tcp")
        return any(c.raddr and c.raddr.port == client_port for c in connections)
    return False


def probe_ready(front_ends: list[psutil.Process], port: int) -> Probe | None:
    """One /ready on a fresh connection: (pid that answered, status, body); None on no answer.

    A stopped front end still gets its share of connections from the kernel and never answers.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/ready")
        response = connection.getresponse()
        body = json.loads(response.read())
        assert connection.sock is not None
        local_port = connection.sock.getsockname()[1]
        answered = [p.pid for p in front_ends if holds_client_port(p, local_port)]
    except (TimeoutError, ConnectionError):
        return None
    finally:
        connection.close()
    assert len(answered) == 1
    return answered[0], response.status, body


def probes_until(
    front_ends: list[psutil.Process], port: int, done: Callable[[list[Probe]], bool], limit_s: float
) -> list[Probe]:
    """/ready answers, one connection each, until `done(answers)` (bounded)."""
    answers: list[Probe] = []
    deadline = time.monotonic() + limit_s
    while not done(answers):
        assert time.monotonic() < deadline, f"after {limit_s:.0f} s: {answers[-5:]}"
        answer = probe_ready(front_ends, port)
        if answer is not None:
            answers.append(answer)
        else:
            time.sleep(0.2)
    return answers


def error_code(answer: Probe) -> str | None:
    return answer[2].get("error", {}).get("code")


@pytest.mark.slow
def test_ready_is_503_on_every_front_end_until_all_are_ready(tmp_path: Path) -> None:
    """One front end held back while loading: the other, ready itself, says how many are."""
    server = start_server(tmp_path, ["--api-server-count", "2"], wait=False)
    streams: list[Stream] = []
    try:
        root = psutil.Process(server.process.pid)
        port = int(server.base_url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        while len(front_ends := [p for p in listening_processes(root, port) if p != root]) < 2:
            assert server.process.poll() is None, server.log_text()[-3000:]
            assert time.monotonic() < deadline, "the front ends did not start"
            time.sleep(0.1)
        running, held = front_ends
        held.suspend()  # SIGSTOP, long before its engine client can be ready
        try:
            # The running one loads ("loading"), then is ready itself: still 503, never 200.
            answers = probes_until(
                front_ends,
                port,
                lambda a: sum(error_code(x) == "front_ends_not_ready" for x in a) >= 5,
                300,
            )
            assert {pid for pid, _, _ in answers} == {running.pid}
            assert {status for _, status, _ in answers} == {503}
            assert {error_code(a) for a in answers} <= {"loading", "front_ends_not_ready"}
            not_ready = [a[2] for a in answers if error_code(a) == "front_ends_not_ready"]
            assert not_ready[-1]["error"]["message"] == "1 of 2 front ends are ready."
            assert not_ready[-1]["error"]["type"] == "service_unavailable"
        finally:
            held.resume()

        # The held one loads too: 503 until then, then 200 from each of them.
        answers = probes_until(front_ends, port, lambda a: bool(a) and a[-1][1] == 200, 300)
        assert {error_code(a) for a in answers[:-1]} <= {"loading", "front_ends_not_ready"}
        answers = probes_until(
            front_ends,
            port,
            lambda a: {pid for pid, _, _ in a} == {running.pid, held.pid} and len(a) >= 6,
            60,
        )
        assert all(status == 200 and body == {"status": "ready"} for _, status, body in answers)

        # One front end drains (a stream in flight keeps it draining): the other's /ready
        # fails with it, since the pod is going away (the parent stops when one ends).
        streams += streams_on_every_front_end(
            server, front_ends, port, 2, max_tokens=4000, extra_body={"ignore_eos": True}
        )
        for _, stream in streams:
            next(iter(stream))  # generating
        held.terminate()
        probes_until(front_ends, port, lambda a: any(error_code(x) == "draining" for x in a), 30)
        answers = probes_until(
            front_ends, port, lambda a: sum(pid == running.pid for pid, _, _ in a) >= 5, 30
        )
        assert held.is_running(), "the drain ended before the probes: hold a longer stream"
        for pid, status, body in answers:
            assert status == 503
            if pid == running.pid:
                assert body["error"]["message"] == "1 of 2 front ends are ready."
            else:
                assert body["error"]["code"] == "draining"
    finally:
        # The pod stops on its own SIGTERM, before the drained front end's exit can stop it.
        server.process.send_signal(signal.SIGTERM)
        for client, stream in streams:
            stream.close()
            client.close()
        code = server.process.wait(120)
        server.stop()
    assert code == 0, server.log_text()[-3000:]
