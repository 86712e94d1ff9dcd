"""With `--api-server-count N`, one front end's `/ready` speaks for the pod: 200 only when all N are.

The front ends share one port (SO_REUSEPORT), so the kubelet's probe reaches one of them and
the kernel hands client connections to any. Each front end leaves a mark (a file named by its
index) in a directory the parent creates for this start, while its engine client is ready and it
is not draining; `/ready` counts the marks. The parent removes the directory when it stops,
which also clears the mark of a front end that crashed. One front end (N = 1) has no marks.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def ready_marks_dir() -> Iterator[str]:
    """A fresh, empty directory for this start's marks, removed (with any marks left) at exit."""
    with tempfile.TemporaryDirectory(prefix="modelplane-ready-") as path:
        yield path


@dataclass(frozen=True)
class ReadyMarks:
    """Front end `index` of `count`: marks itself ready, withdraws, counts who is ready."""

    directory: Path
    index: int
    count: int

    @classmethod
    def for_front_end(
        cls, directory: str | None, client_config: dict[str, Any] | None
    ) -> ReadyMarks | None:
        """From vLLM's `client_config` (`client_index`/`client_count`); None for a lone server."""
        if directory is None or not client_config:
            return None
        count = int(client_config.get("client_count", 1))
        if count <= 1:
            return None
        return cls(Path(directory), int(client_config["client_index"]), count)

    @property
    def path(self) -> Path:
        return self.directory / str(self.index)

    def mark_ready(self) -> None:
        """Written under a temporary name, then renamed: a probe never counts a half-made mark."""
        temporary = self.directory / f".{self.index}.tmp"
        temporary.write_text(f"{os.getpid()}\n")
        os.replace(temporary, self.path)

    def withdraw(self) -> None:
        """Draining, failed or exiting: every front end's /ready now says 503."""
        self.path.unlink(missing_ok=True)

    def ready_count(self) -> int:
        """How many of the `count` front ends are marked ready (one directory listing)."""
        names = {str(i) for i in range(self.count)}
        try:
            with os.scandir(self.directory) as entries:
                return sum(1 for entry in entries if entry.name in names)
        except FileNotFoundError:  # the parent is stopping and removed the directory
            return 0
