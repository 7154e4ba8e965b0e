"""Render: Figure-3 diagrams of specs (`diagram.py`; BM-NAS cells: `bmnas.py`) and plots of
a search run (`plot.py`)."""

from mmnasdsl.render import bmnas  # noqa: F401  (registers the BM-NAS drawer)
