"""Image-text matching (issue 18): the negatives schedule in training and search, random
negatives, scoring that runs each caption's word stream once, and the README's two commands
end to end on a tiny spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _runkit import cli, make_data, tiny_spec_text, write_spec

from mmnasdsl.data import open_split
from mmnasdsl.heads import itm as I
from mmnasdsl.lang.settings import search_settings, train_settings
from mmnasdsl.search import SearchJob, run_search
from mmnasdsl.train.loop import NetRunner, batch_iter, model_for
from mmnasdsl.train.progress import NullReporter
from mmnasdsl.train.trainer import Trainer, TrainJob

MINED = "head itm(candidates = 6, top_k = 2)"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("itm"), "itm")


def count_minings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The (0-based) epochs `ITM.mine` runs for, appended as it runs."""
    mined: list[int] = []
    mine = I.ITM.mine

    def counting(self: I.ITM, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        mined.append(kwargs.get("epoch", args[-1] if args else None))
        return mine(self, *args, **kwargs)

    monkeypatch.setattr(I.ITM, "mine", counting)
    return mined


def test_random_negatives_never_match(tmp_path: Path, data: Path) -> None:
    _, spec = write_spec(tmp_path, tiny_spec_text("itm", searchable=False))
    train = open_split(data, "train", spec)
    rows = list(range(len(train)))
    neg = I.random_negatives(train, rows, seed=0, epoch=0, k=3)
    cap_img = torch.as_tensor(train.caption_image)
    assert neg["captions"].shape == (train.n_images, 3) and neg["images"].shape == (len(rows), 3)
    assert (cap_img[neg["captions"]] != torch.arange(train.n_images)[:, None]).all()
    assert (neg["images"] != cap_img[:, None]).all()
    again = I.random_negatives(train, rows, seed=0, epoch=0, k=3)
    other = I.random_negatives(train, rows, seed=0, epoch=1, k=3)
    assert torch.equal(neg["images"], again["images"])  # a pure function of (seed, epoch)
    assert not torch.equal(neg["images"], other["images"])


def test_pair_scores_run_each_caption_once(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mining and evaluation cost path: pairs sorted by caption, each batch's distinct
    sentences through the word stream once, logits equal to the plain forward's."""
    _, spec = write_spec(tmp_path, tiny_spec_text("itm", searchable=False))
    train = open_split(data, "train", spec)
    net = model_for(spec, train).eval()
    assert net.words_alone  # the text encoder reads no guide
    rng = np.random.default_rng(0)
    images = rng.integers(0, train.n_images, 300)
    captions = rng.integers(0, 7, 300)  # 7 distinct captions, many pairs each, shuffled
    pairs = train.pairs(images.tolist(), captions.tolist(), [0.0] * 300)
    batches = [list(range(i, min(i + 64, 300))) for i in range(0, 300, 64)]
    with torch.no_grad():
        plain = torch.cat(
            [net(b)["logits"] for b in batch_iter(pairs, batches, relations=True, device="cpu")]
        )
    encoded: list[int] = []
    encode = net.encode_words
    monkeypatch.setattr(
        net, "encode_words", lambda b: (encoded.append(len(b["words"])), encode(b))[1]
    )
    runner = NetRunner(net, torch.device("cpu"), relations=True)
    monkeypatch.setattr("mmnasdsl.train.loop.EVAL_BATCH", 128)
    shared = I.pair_scores(runner, train, images, captions)
    assert torch.allclose(shared, plain, atol=1e-5)
    # sorted by caption, a batch of 128 holds 1-3 captions: 7 sentences + at most 2 borders
    assert 7 <= sum(encoded) <= 7 + 2


def test_shared_words_refused_when_the_text_reads_a_guide(tmp_path: Path, data: Path) -> None:
    text = (
        tiny_spec_text("itm", searchable=False)
        .replace("encoder text = SA FFN", "encoder image = SA FFN")
        .replace("decoder image(guide = text) = GA RSA", "decoder text(guide = image) = GA FFN")
    )
    _, spec = write_spec(tmp_path, text)
    train = open_split(data, "train", spec)
    net = model_for(spec, train).eval()
    assert not net.words_alone
    batch = next(
        iter(
            batch_iter(
                train.pairs([0, 1], [0, 0], [1.0, 0.0]), [[0, 1]], relations=True, device="cpu"
            )
        )
    )
    with torch.no_grad():
        assert torch.equal(net.forward_sharing_words(batch)["logits"], net(batch)["logits"])
    with pytest.raises(ValueError, match="guide"):
        net.encode_words(batch)


def test_training_follows_the_negatives_plan(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mined = count_minings(monkeypatch)
    text = tiny_spec_text("itm", searchable=False, train="epochs = 4  batch = 16  lr = 0.002")
    text = text.replace(
        MINED, "head itm(candidates = 6, top_k = 2, negatives_from = 2, mine_every = 2)"
    )
    _, spec = write_spec(tmp_path, text)
    run = tmp_path / "run"
    run.mkdir()
    job = TrainJob(
        spec=spec, data=data, run_dir=run, settings=train_settings(spec), reporter=NullReporter()
    )
    epochs = Trainer(job).fit()["epochs"]
    assert mined == [1, 3]  # 0-based: epoch 1 random, 2 mined, 3 reused, 4 mined
    assert all(0 <= e["data_seconds"] <= e["seconds"] for e in epochs)
    assert all(0 <= e["data_cpu_seconds"] <= e["cpu_seconds"] for e in epochs)


def test_random_negatives_by_default_never_mine(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mined = count_minings(monkeypatch)
    text = tiny_spec_text("itm", searchable=False).replace(MINED, "head itm")
    _, spec = write_spec(tmp_path, text)
    run = tmp_path / "run"
    run.mkdir()
    job = TrainJob(
        spec=spec, data=data, run_dir=run, settings=train_settings(spec), reporter=NullReporter()
    )
    Trainer(job).fit()
    assert mined == []


def test_search_mines_once_per_epoch_by_the_plan(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mined = count_minings(monkeypatch)
    text = tiny_spec_text("itm", search="warmup = 1  epochs = 2  update_ratio = 2  batch = 16")
    text = text.replace(MINED, "head itm(candidates = 6, top_k = 2, negatives_from = 2)")
    _, spec = write_spec(tmp_path, text)
    j = SearchJob(
        spec=spec,
        data=data,
        run_dir=tmp_path / "run",
        settings=search_settings(spec),
        reporter=NullReporter(),
    )
    j.run_dir.mkdir()
    history = run_search(j)
    assert mined == [1, 2]  # epoch 1 (warm-up) random; D_m and D_a share one mining
    assert all(0 <= e["data_seconds"] <= e["seconds"] for e in history["epochs"])
    assert history["epochs"][-1]["metric_name"] == "rsum"


def test_readme_commands_end_to_end(tmp_path: Path) -> None:
    """`mmnasdsl search` then `mmnasdsl train` of its arch.mmnas, as the README runs
    specs/shapes-itm.mmnas, on a tiny spec with the shipped head options."""
    text = tiny_spec_text("itm", search="warmup = 1  epochs = 1  update_ratio = 2  batch = 16")
    write_spec(tmp_path, text.replace(MINED, "head itm(negatives_from = 0)"))
    cli("search", "tiny.mmnas", "-o", "R", "--quiet", cwd=tmp_path)
    assert "head itm" in (tmp_path / "R" / "arch.mmnas").read_text()
    cli("train", "R/arch.mmnas", "-o", "T", "--quiet", cwd=tmp_path)
    metrics = json.loads((tmp_path / "T" / "metrics.json").read_text())
    assert metrics["metric"] == "rsum" and {"i2t_r1", "rsum"} <= set(metrics["best"])
    assert 0 <= metrics["best"]["rsum"] <= 600
    assert all(e["data_seconds"] <= e["seconds"] for e in metrics["epochs"])
