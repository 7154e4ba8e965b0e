"""Training from scratch and evaluation, every task, at tiny scale; the lr schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _runkit import make_data, tiny_spec_text, write_spec

from mmnasdsl.commands.run import train_cmd
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.settings import train_settings
from mmnasdsl.train.loop import NetRunner, lr_factor, model_for
from mmnasdsl.train.progress import NullReporter
from mmnasdsl.train.runs import load_checkpoint
from mmnasdsl.train.trainer import Trainer, TrainJob, evaluate_checkpoint


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_train_then_eval(task: str, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", task)
    _, spec = write_spec(tmp_path, tiny_spec_text(task, searchable=False))
    run = tmp_path / "run"
    run.mkdir()
    job = TrainJob(
        spec=spec, data=data, run_dir=run, settings=train_settings(spec), reporter=NullReporter()
    )
    summary = Trainer(job).fit()

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(summary))
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][0]["lr"] == pytest.approx(0.001)  # warm-up: 1/2 of 0.002
    assert metrics["epochs"][1]["lr"] == pytest.approx(0.0004)  # decayed x0.2 after epoch 1
    key = {"vqa": "accuracy", "itm": "rsum", "vg": "accuracy"}[task]
    assert metrics["metric"] == key and metrics["best"][key] >= 0
    assert load_checkpoint(run / "last.pt")["state"]["epoch"] == 2

    result, predictions = evaluate_checkpoint(
        spec, run / "best.pt", data, "test", torch.device("cpu")
    )
    assert key in result and predictions
    if task == "vqa":
        assert set(predictions[0]) == {"question_id", "answer"}
        assert set(result["per_type"]) <= {"yes/no", "number", "other"} and result["per_family"]
    if task == "itm":
        assert {"i2t_r1", "t2i_r10", "i2t_medr", "t2i_meanr"} <= set(result)


def test_resume_a_finished_epoch(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", "vg")
    _, spec = write_spec(tmp_path, tiny_spec_text("vg", searchable=False))
    runs = {}
    for name, plan in (("full", [2]), ("split", [1, 2])):
        run = tmp_path / name
        run.mkdir()
        for i, epochs in enumerate(plan):
            job = TrainJob(
                spec=spec,
                data=data,
                run_dir=run,
                resume=i > 0,
                settings=train_settings(spec, epochs=epochs),
                reporter=NullReporter(),
            )
            Trainer(job).fit()
        runs[name] = load_checkpoint(run / "last.pt")["model"]
    assert all(torch.equal(runs["full"][k], runs["split"][k]) for k in runs["full"])


def test_searchable_spec_is_refused(tmp_path: Path) -> None:
    path, _ = write_spec(tmp_path, tiny_spec_text("vqa"))
    with pytest.raises(UsageError, match="mmnasdsl search"):
        train_cmd(path, out=tmp_path / "run")


def test_lr_schedule() -> None:
    factors = [lr_factor(e, 3, (10, 12), 0.2) for e in range(13)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[9] == 1.0 and factors[10] == pytest.approx(0.2)
    assert factors[12] == pytest.approx(0.04)


def test_hard_negatives_never_match(tmp_path: Path) -> None:
    from mmnasdsl.data import open_split
    from mmnasdsl.heads.itm import itm_triples

    data = make_data(tmp_path / "data", "itm")
    _, spec = write_spec(tmp_path, tiny_spec_text("itm", searchable=False))
    train = open_split(data, "train", spec)
    net = model_for(spec, train)
    rows = list(range(len(train)))
    runner = NetRunner(net, torch.device("cpu"), relations=True)
    neg = net.task.mine(runner, train, rows, seed=0, epoch=0)  # candidates 6, top_k 2
    cap_img = torch.as_tensor(train.caption_image)
    assert neg["captions"].shape == (train.n_images, 2) and neg["images"].shape == (len(rows), 2)
    assert (cap_img[neg["captions"]] != torch.arange(train.n_images)[:, None]).all()
    assert (neg["images"] != cap_img[:, None]).all()
    pairs = itm_triples(train, rows, neg, seed=0, epoch=0)
    assert len(pairs) == 3 * len(rows) and pairs.labels.tolist()[:3] == [1.0, 0.0, 0.0]
    assert pairs.weights is None  # the loss weighs the positive (`positive_weight`)
    assert pairs.images[0] == pairs.images[1] == train.caption_image[0] != pairs.images[2]


def test_resume_refuses_another_seed_or_schedule(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", "vqa")
    path, _ = write_spec(tmp_path, tiny_spec_text("vqa", searchable=False))
    run = tmp_path / "run"
    flags = {"data": str(data), "device": "cpu", "quiet": True, "out": run}
    train_cmd(path, **flags, epochs=1)
    with pytest.raises(UsageError, match="seed differs"):
        train_cmd(path, **flags, resume=True, epochs=2, seed=3)
    with pytest.raises(UsageError, match="settings differs"):
        train_cmd(path, **flags, resume=True, epochs=2, lr=0.5)
    train_cmd(path, **flags, resume=True, epochs=2)  # more epochs: the same run, extended
    assert load_checkpoint(run / "last.pt")["state"]["epoch"] == 2
