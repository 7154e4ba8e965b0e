"""Search: spaces (the choice points of a spec), searchers that own them, and the driver.

- `space.py`: `SearchSpace`, `space_of(spec)`, `derive` (probabilities -> architecture, by
  kind); `bmnas.py`: BM-NAS's space and pair-selection rules; `estimators.py`: α and the
  routes it gives (one path, ProxylessNAS two / full, DARTS mixture).
- `base.py`: the `Searcher` interface and the `SEARCHERS` registry; `oneshot.py` (MMnas
  Algorithm 1, the default), `darts.py` (first-order DARTS), `random.py` (the baseline).
- `driver.py`: the search loop every searcher runs under (on `train.loop.Loop`).
"""

from mmnasdsl.search import bmnas, darts, oneshot, random  # noqa: F401  (register)
from mmnasdsl.search.base import SEARCHERS, Searcher, ThetaBatch, register_searcher
from mmnasdsl.search.driver import SearchDriver, SearchJob, run_search
from mmnasdsl.search.oneshot import OneShotSearcher
from mmnasdsl.search.random import RandomSearcher, sample_architectures
from mmnasdsl.search.space import Arch, SearchSpace, space_of

__all__ = [
    "SEARCHERS",
    "Arch",
    "OneShotSearcher",
    "RandomSearcher",
    "SearchDriver",
    "SearchJob",
    "SearchSpace",
    "Searcher",
    "ThetaBatch",
    "register_searcher",
    "run_search",
    "sample_architectures",
    "space_of",
]
