"""Architecture search: a small `Searcher` interface and its implementations.

- `base.py`: `Searcher` (propose / candidate / feedback / best, optional `learn`) and the
  `SEARCHERS` registry.
- `oneshot.py`: MMnas Algorithm 1 (the default) and the driver every searcher runs under.
- `random.py`: random search, the ablation's baseline.
"""

from mmnasdsl.search import random  # noqa: F401  (registers "random")
from mmnasdsl.search.base import SEARCHERS, Arch, Searcher, register_searcher
from mmnasdsl.search.driver import OneShotSearch, OneShotSearcher, SearchJob, run_search
from mmnasdsl.search.random import RandomSearcher, sample_architectures

__all__ = [
    "SEARCHERS",
    "Arch",
    "OneShotSearch",
    "OneShotSearcher",
    "RandomSearcher",
    "SearchJob",
    "Searcher",
    "register_searcher",
    "run_search",
    "sample_architectures",
]
