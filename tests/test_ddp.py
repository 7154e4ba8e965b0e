"""Two CPU processes (gloo) search and train with DDP and end with equal weights.

Every rank samples the same path each step (generators seeded from (seed, epoch, step)),
so gradients of the same candidates are all-reduced; candidates off the path get none.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from _runkit import make_data, tiny_spec_text, write_spec

import mmnasdsl
from mmnasdsl.lang.settings import search_settings, train_settings
from mmnasdsl.search import SearchDriver, SearchJob
from mmnasdsl.train import distributed
from mmnasdsl.train.progress import NullReporter
from mmnasdsl.train.trainer import Trainer, TrainJob

SEARCH = "warmup = 1  epochs = 1  update_ratio = 2  batch = 16  patience = 9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    root = Path(folder)
    dist = distributed.init(torch.device("cpu"))
    try:
        spec = mmnasdsl.load(root / "search.mmnas")
        job = SearchJob(
            spec=spec,
            data=root / "data",
            run_dir=root / "search",
            settings=search_settings(spec),
            reporter=NullReporter(),
            dist=dist,
        )
        search = SearchDriver(job)
        propose, paths = search.searcher.w_routes, []

        def record(*args: object) -> object:
            routes = propose(*args)
            paths.append([leg.index for route in routes for leg in route])
            return routes

        search.searcher.w_routes = record  # type: ignore[method-assign]
        search.run()
        alpha = {f"alpha.{k}": v for k, v in search.searcher.alpha.state_dict().items()}
        torch.save(
            {**search.supernet.state_dict(), **alpha, "paths": torch.tensor(paths)},
            root / f"search-{rank}.pt",
        )
        spec = mmnasdsl.load(root / "train.mmnas")
        trainer = Trainer(
            TrainJob(
                spec=spec,
                data=root / "data",
                run_dir=root / "train",
                settings=train_settings(spec, epochs=1),
                reporter=NullReporter(),
                dist=dist,
            )
        )
        trainer.fit()
        torch.save(trainer.model.state_dict(), root / f"train-{rank}.pt")
    finally:
        distributed.shutdown(dist)


def test_two_ranks_hold_equal_weights(tmp_path: Path) -> None:
    make_data(tmp_path / "data", "vqa")
    write_spec(tmp_path, tiny_spec_text("vqa", search=SEARCH), "search.mmnas")
    write_spec(tmp_path, tiny_spec_text("vqa", searchable=False), "train.mmnas")
    (tmp_path / "search").mkdir()
    (tmp_path / "train").mkdir()
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)

    for kind in ("search", "train"):
        a, b = (torch.load(tmp_path / f"{kind}-{r}.pt", weights_only=True) for r in (0, 1))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{kind}: {key} differs between ranks"
    search0 = torch.load(tmp_path / "search-0.pt", weights_only=True)
    assert len(search0["paths"]) >= 2 and len({tuple(p) for p in search0["paths"].tolist()}) > 1
    assert any(v.abs().sum() > 0 for k, v in search0.items() if k.startswith("alpha."))  # θ learnt
    assert (tmp_path / "search" / "arch.mmnas").is_file()  # rank 0 wrote the run files
    assert (tmp_path / "train" / "metrics.json").is_file()
