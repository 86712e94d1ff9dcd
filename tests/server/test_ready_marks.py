"""`--api-server-count N`: each front end marks itself ready, and /ready counts the marks.

The multi-process behaviour over the real engine is in test_api_servers.py; these tests run
the marks and the real app's /ready route in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from modelplane.server import cli
from modelplane.server.app import build_app
from modelplane.server.ready_marks import ReadyMarks, ready_marks_dir
from modelplane.server.state import Phase, ServerState, init_state


def front_end(directory: Path, index: int, count: int) -> ReadyMarks:
    config = {"client_index": index, "client_count": count}
    marks = ReadyMarks.for_front_end(str(directory), config)
    assert marks is not None
    return marks


def test_a_lone_server_has_no_marks(tmp_path: Path) -> None:
    assert ReadyMarks.for_front_end(str(tmp_path), {"client_index": 0, "client_count": 1}) is None
    assert ReadyMarks.for_front_end(str(tmp_path), None) is None
    assert ReadyMarks.for_front_end(None, {"client_index": 0, "client_count": 2}) is None
    assert list(tmp_path.iterdir()) == []


def test_each_front_end_counts_once_it_marks_itself_ready(tmp_path: Path) -> None:
    first, second, third = (front_end(tmp_path, i, 3) for i in range(3))
    assert first.ready_count() == 0
    first.mark_ready()
    first.mark_ready()  # again: still one
    assert third.ready_count() == 1
    second.mark_ready()
    third.mark_ready()
    assert first.ready_count() == 3
    assert (tmp_path / "1").read_text().strip().isdigit()  # the pid, for whoever looks


def test_a_withdrawn_mark_no_longer_counts(tmp_path: Path) -> None:
    first, second = front_end(tmp_path, 0, 2), front_end(tmp_path, 1, 2)
    first.mark_ready()
    second.mark_ready()
    second.withdraw()
    second.withdraw()  # again: nothing to remove
    assert first.ready_count() == 1


def test_half_written_and_foreign_files_are_not_marks(tmp_path: Path) -> None:
    marks = front_end(tmp_path, 0, 2)
    (tmp_path / ".1.tmp").write_text("")  # a mark being written
    (tmp_path / "2").write_text("")  # an index beyond the count
    (tmp_path / "notes").write_text("")
    assert marks.ready_count() == 0


def test_the_parent_clears_every_mark_when_it_stops() -> None:
    with ready_marks_dir() as path:
        assert list(Path(path).iterdir()) == []
        marks = front_end(Path(path), 0, 2)
        marks.mark_ready()  # a front end that crashed would leave this
    assert not Path(path).exists()
    assert marks.ready_count() == 0


def front_end_state(directory: Path, index: int) -> ServerState:
    """Front end `index` of two whose engine client is ready."""
    settings = cli.build_settings(cli.parse_args(["--model", "/models/x"], {}))
    state = init_state(settings)
    state.ready_marks = front_end(directory, index, 2)
    state.phase = Phase.READY  # what engine_ready() sets, without loading an engine
    state.ready_marks.mark_ready()
    return state


@pytest.fixture
async def first_of_two(tmp_path: Path) -> AsyncIterator[tuple[ServerState, httpx.AsyncClient]]:
    """The real app of front end 0 of two, ready itself (no lifespan: no engine starts)."""
    state = front_end_state(tmp_path, 0)
    transport = httpx.ASGITransport(app=build_app(state.settings, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield state, client


async def test_ready_is_503_with_how_many_are_ready_until_every_front_end_is(
    tmp_path: Path, first_of_two: tuple[ServerState, httpx.AsyncClient]
) -> None:
    _, client = first_of_two
    ready = await client.get("/ready")
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["message"] == "1 of 2 front ends are ready."
    assert (error["type"], error["code"]) == ("service_unavailable", "front_ends_not_ready")

    front_end_state(tmp_path, 1)
    ready = await client.get("/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_a_draining_front_end_fails_every_front_ends_ready(
    tmp_path: Path, first_of_two: tuple[ServerState, httpx.AsyncClient]
) -> None:
    first, client = first_of_two
    second = front_end_state(tmp_path, 1)
    assert (await client.get("/ready")).status_code == 200

    second.leave_ready(Phase.DRAINING)
    ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["error"]["message"] == "1 of 2 front ends are ready."

    first.leave_ready(Phase.DRAINING)
    ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "draining"
    assert list(tmp_path.iterdir()) == []
