"""Render: Figure-3 diagrams of specs (`diagram.py`) and plots of a search run (`plot.py`)."""
