"""Progress reporting seen by the training and search loops, kept free of any UI.

The loops call a `Reporter` (start a phase, advance by a batch, finish); the library's
default, `LogReporter`, writes plain `logging` lines (what a log file or a non-terminal
wants). The CLI passes a rich progress bar instead (`mmnasdsl.commands.run`), so rich
stays out of library code.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

log = logging.getLogger("mmnasdsl")


class Reporter(Protocol):
    """What a loop tells the outside world about its progress."""

    def start(self, phase: str, total: int, done: int = 0) -> None:
        """A phase (an epoch, an evaluation) of `total` steps begins, `done` already done."""

    def advance(self, samples: int, **stats: float) -> None:
        """One step of `samples` samples finished; `stats` are running values (loss)."""

    def finish(self, summary: str) -> None:
        """The phase ended; `summary` is one line for the log."""


def format_stats(stats: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in stats.items())


class Meter:
    """Samples/s and ETA of one phase, shared by every reporter."""

    def __init__(self, total: int, done: int = 0) -> None:
        self.total, self.done, self.samples = total, done, 0
        self.t0 = time.perf_counter()
        self._start_done = done

    def advance(self, samples: int) -> None:
        self.done += 1
        self.samples += samples

    @property
    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.t0, 1e-9)

    @property
    def eta(self) -> float:
        steps = self.done - self._start_done
        if steps <= 0:
            return float("nan")
        per_step = (time.perf_counter() - self.t0) / steps
        return per_step * (self.total - self.done)


class LogReporter:
    """Plain log lines: one every `every_seconds` during a phase, and one at its end."""

    def __init__(self, every_seconds: float = 10.0, logger: logging.Logger = log) -> None:
        self.every, self.log = every_seconds, logger
        self.phase, self.meter, self._last = "", Meter(0), 0.0

    def start(self, phase: str, total: int, done: int = 0) -> None:
        self.phase, self.meter, self._last = phase, Meter(total, done), time.perf_counter()

    def advance(self, samples: int, **stats: float) -> None:
        self.meter.advance(samples)
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            m = self.meter
            self.log.info(
                "%s %d/%d %s | %.0f samples/s | eta %.0fs",
                self.phase,
                m.done,
                m.total,
                format_stats(stats),
                m.rate,
                m.eta,
            )

    def finish(self, summary: str) -> None:
        self.log.info("%s", summary)


class NullReporter:
    """Reports nothing (ranks other than 0, tests)."""

    def start(self, phase: str, total: int, done: int = 0) -> None:
        pass

    def advance(self, samples: int, **stats: float) -> None:
        pass

    def finish(self, summary: str) -> None:
        pass
