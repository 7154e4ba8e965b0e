"""Mixed precision (`precision = fp32 | bf16 | fp16`) and per-block activation checkpointing
(`checkpoint = true`): tiny runs work, flags override specs, fp16 on a CPU is refused, and
checkpointing changes no gradient."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _runkit import make_data, tiny_spec_text, write_spec

from mmnasdsl.commands.run import flag_settings
from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.supernet import Leg, Supernet
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.settings import search_settings, train_settings
from mmnasdsl.search import SearchJob, run_search
from mmnasdsl.train import precision
from mmnasdsl.train.loop import w_step
from mmnasdsl.train.precision import Amp
from mmnasdsl.train.progress import NullReporter
from mmnasdsl.train.trainer import Trainer, TrainJob

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("vqa"), "vqa")


def tiny_batch(seed: int = 0, batch: int = 3, words: int = 5, objects: int = 4) -> dict:
    """A random batch for the tiny spec, with padded words and objects in its last row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (batch, words), generator=g)
    ids[-1, 3:] = 0
    obj_mask = torch.ones(batch, objects, dtype=torch.bool)
    obj_mask[-1, 2:] = False
    xy = torch.rand(batch, objects, 2, generator=g)
    return {
        "words": ids,
        "words_mask": ids != 0,
        "objects": torch.randn(batch, objects, 64, generator=g),
        "objects_mask": obj_mask,
        "boxes": torch.cat([xy, xy + 0.1 + torch.rand(batch, objects, 2, generator=g)], -1),
        "answer_scores": (torch.rand(batch, 7, generator=g) > 0.7).float(),
    }


def tiny_net(tmp_path: Path, searchable: bool = False) -> torch.nn.Module:
    _, spec = write_spec(tmp_path, tiny_spec_text("vqa", searchable=searchable))
    torch.manual_seed(0)
    return build_model(spec, vocab_size=50, num_answers=7)


def test_bf16_train_run_has_finite_loss(tmp_path: Path, data: Path) -> None:
    _, spec = write_spec(
        tmp_path,
        tiny_spec_text("vqa", searchable=False, train="epochs = 1 batch = 16 precision = bf16"),
    )
    run = tmp_path / "run"
    run.mkdir()
    settings = train_settings(spec)
    assert settings.precision == "bf16"
    job = TrainJob(spec=spec, data=data, run_dir=run, settings=settings, reporter=NullReporter())
    trainer = Trainer(job)
    trainer.fit()
    epochs = json.loads((run / "metrics.json").read_text())["epochs"]
    assert math.isfinite(epochs[0]["loss"])
    # weights and their optimiser state stay fp32; only the forward ran in bf16
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_bf16_search_run_has_finite_losses(tmp_path: Path, data: Path) -> None:
    _, spec = write_spec(
        tmp_path,
        tiny_spec_text(
            "vqa", search="warmup = 0 epochs = 1 update_ratio = 1 batch = 16 precision = bf16"
        ),
    )
    job = SearchJob(
        spec=spec,
        data=data,
        run_dir=tmp_path / "run",
        settings=search_settings(spec),
        reporter=NullReporter(),
    )
    history = run_search(job)
    record = history["epochs"][0]
    assert math.isfinite(record["loss_w"]) and math.isfinite(record["loss_theta"])


def test_bf16_autocast_runs_the_matmuls_in_bf16(tmp_path: Path) -> None:
    """Not a no-op: under the bf16 context the classifier's logits come out in bf16, and the
    step's loss is close to the fp32 one on the same weights and batch."""
    net = tiny_net(tmp_path).eval()
    batch = tiny_batch()
    with torch.no_grad():
        fp32 = net.loss(net(batch), batch)
        with Amp("bf16", CPU).autocast():
            out = net(batch)
            bf16 = net.loss(out, batch)
    assert out["logits"].dtype == torch.bfloat16
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.05)


def test_the_flag_overrides_the_spec(tmp_path: Path) -> None:
    _, spec = write_spec(tmp_path, tiny_spec_text("vqa", train="epochs = 1 precision = bf16"))
    assert train_settings(spec).precision == "bf16"
    assert flag_settings(train_settings, spec, precision="fp32").precision == "fp32"
    assert flag_settings(train_settings, spec, precision=None).precision == "bf16"
    assert flag_settings(search_settings, spec, precision="bf16").precision == "bf16"
    with pytest.raises(UsageError, match="--precision"):
        flag_settings(train_settings, spec, precision="fp8")


def test_fp16_on_a_cpu_is_refused() -> None:
    with pytest.raises(UsageError, match="fp16 needs a CUDA device"):
        Amp("fp16", CPU)
    Amp("bf16", CPU)  # bf16 is fine on a CPU


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(
    native: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Emulated bf16 is several times slower than fp32: the run says so before it starts."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    with caplog.at_level("WARNING", logger="mmnasdsl"):
        Amp("bf16", CPU)
        Amp("fp32", CPU)
    slow = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert len(slow) == (0 if native else 1)


def grads(
    net: torch.nn.Module, batch: dict, checkpoint: bool, seed: int = 1
) -> dict[str, torch.Tensor]:
    """Gradients of one loss (train mode: dropout on) with the global RNG reseeded."""
    net.checkpoint = checkpoint
    net.train()
    net.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    net.loss(net(batch), batch).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_checkpointing_changes_no_gradient(tmp_path: Path) -> None:
    net = tiny_net(tmp_path)
    batch = tiny_batch()
    plain, ckpt = grads(net, batch, False), grads(net, batch, True)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(plain[name], ckpt[name], atol=1e-6), name


def test_checkpointing_a_supernet_with_a_gated_route(tmp_path: Path) -> None:
    """A mixed route (a weighted live leg and an idle one without autograd) checkpoints too."""
    net = tiny_net(tmp_path, searchable=True)
    assert isinstance(net, Supernet)
    gate = torch.tensor(0.7, requires_grad=True)
    routes = [(Leg(0, gate), Leg(1, 1 - gate.detach(), grad=False)) for _ in net.mixed]
    net.set_routes(routes)
    batch = tiny_batch(seed=2)
    results = []
    for checkpoint in (False, True):
        gate.grad = None
        g = grads(net, batch, checkpoint)
        results.append((g, gate.grad.clone()))
    (plain, gate_plain), (ckpt, gate_ckpt) = results
    assert torch.allclose(gate_plain, gate_ckpt, atol=1e-6)
    for name in plain:
        assert torch.allclose(plain[name], ckpt[name], atol=1e-6), name


def test_w_step_with_checkpointing_trains(tmp_path: Path) -> None:
    net = tiny_net(tmp_path)
    net.checkpoint = True
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    batch = tiny_batch()
    losses = [w_step(net.train(), batch, opt, 1.0, Amp("bf16", CPU)) for _ in range(5)]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
