"""Data sources: what a spec's `data NAME(...)` statement names, one registry for all.

A source is a function `(spec, kind) -> Path` (`kind`: the task's data kind): the folder
holding the spec's train/val/test stores, generated there on first use when the source is
generated. `h5`, `shapes` and `planted` register in `data/resolve.py`, BM-NAS's planted-pair
task `xor` in `data/xor.py`; a new source is one function registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmnasdsl.lang.registry import Registry

SOURCES: Registry[Callable[[Any, str], Path]] = Registry("data source")
