"""Importers: the community formats (REFERENCE.md) -> the feature store (docs/data-format.md).

`vqa2`, `flickr30k` and `refcoco` read the annotation files; `features` reads region
features from a folder of `.npz`, a bottom-up-attention `.h5` or a `.tsv`; `taps` writes a
BM-NAS tap store from per-layer features.
"""

from __future__ import annotations

from mmnasdsl.data.importers.features import open_features, safe_pickle_load
from mmnasdsl.data.importers.flickr30k import import_flickr30k
from mmnasdsl.data.importers.refcoco import import_refcoco
from mmnasdsl.data.importers.taps import import_taps
from mmnasdsl.data.importers.vqa2 import import_vqa2

__all__ = [
    "import_flickr30k",
    "import_refcoco",
    "import_taps",
    "import_vqa2",
    "open_features",
    "safe_pickle_load",
]
