"""Generated data sources other than `shapes`: `data NAME(...)` statements whose stores are
made on first use (BM-NAS's planted-pair task, `data xor(...)`, in `xor.py`).

A source is a function `(spec) -> Path`: the folder holding the spec's train/val/test
stores, generated there when missing. `data.resolve` asks this registry before its own
`shapes` and `h5` sources.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmnasdsl.lang.registry import Registry

SOURCES: Registry[Callable[[Any], Path]] = Registry("data source")
