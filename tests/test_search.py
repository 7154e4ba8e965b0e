"""Algorithm 1 end to end at tiny scale: run files, a concrete arch.mmnas, θ moves, early stop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _runkit import make_data, tiny_spec_text, write_spec

import mmnasdsl
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.settings import search_settings
from mmnasdsl.search import (
    OneShotSearcher,
    SearchDriver,
    SearchJob,
    run_search,
    sample_architectures,
)
from mmnasdsl.search.driver import split_rows
from mmnasdsl.train.progress import NullReporter
from mmnasdsl.train.runs import load_checkpoint, prepare_run_dir


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("vqa"), "vqa")


def job(tmp_path: Path, data: Path, search: str = "", **kw: object) -> SearchJob:
    _, spec = write_spec(tmp_path, tiny_spec_text("vqa", search=search))
    return SearchJob(
        spec=spec,
        data=data,
        run_dir=tmp_path / "run",
        settings=search_settings(spec),
        reporter=NullReporter(),
        **kw,
    )


def test_search_writes_a_concrete_spec_and_history(tmp_path: Path, data: Path) -> None:
    j = job(tmp_path, data, "warmup = 1  epochs = 2  update_ratio = 2  batch = 16  theta_lr = 0.5")
    j.run_dir.mkdir()
    search = SearchDriver(j)
    alpha0 = [a.detach().clone() for a in search.searcher.alpha]
    history = search.run()

    arch = mmnasdsl.load(j.run_dir / "arch.mmnas")
    assert arch.is_concrete
    assert arch.model == j.spec.model and arch.head == j.spec.head and arch.inputs == j.spec.inputs
    text = (j.run_dir / "arch.mmnas").read_text()
    assert text.startswith("# mmnasdsl search") and "epoch 3/3" in text and "run: run" in text

    on_disk = json.loads((j.run_dir / "history.json").read_text())
    assert on_disk == json.loads(json.dumps(history))
    assert [e["phase"] for e in on_disk["epochs"]] == ["warmup", "search", "search"]
    assert len(on_disk["blocks"]) == 4 and on_disk["epochs"][0]["loss_theta"] is None
    assert all(
        0 <= e["metric"] <= 100 and e["metric_name"] == "accuracy" for e in on_disk["epochs"]
    )
    assert on_disk["epochs"][-1]["arch"] == {
        "encoder": [b.choices[0] for b in arch.blocks()[:2]],
        "decoder": [b.choices[0] for b in arch.blocks()[2:]],
    }
    # θ moved in the search phase only, and α is what the checkpoint holds
    assert on_disk["epochs"][0]["theta"][0] == pytest.approx([0.5, 0.5])
    alpha = list(search.searcher.alpha)
    assert any(not torch.allclose(a, b) for a, b in zip(alpha, alpha0, strict=True))
    ckpt = load_checkpoint(j.run_dir / "checkpoint.pt")
    assert ckpt["state"]["done"]
    saved = ckpt["searcher_state"]["alpha"]["rows.2"]
    assert torch.equal(saved, search.searcher.alpha.rows[2].detach())
    assert not any("alpha" in key for key in ckpt["model"])  # α is the searcher's, not W


def test_early_stop_when_argmax_is_stable(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # θ frozen: the argmax cannot change, so the search stops after `patience` more epochs
    monkeypatch.setattr(OneShotSearcher, "learn", lambda self, batch, gen: 0.0)
    j = job(tmp_path, data, "warmup = 0  epochs = 10  update_ratio = 2  batch = 32  patience = 2")
    j.run_dir.mkdir()
    history = run_search(j)
    assert len(history["epochs"]) == 3 and history["done"]
    assert "(final)" in (j.run_dir / "arch.mmnas").read_text()


def test_random_searcher_keeps_best_scored(tmp_path: Path, data: Path) -> None:
    j = job(tmp_path, data, "warmup = 1  epochs = 2  batch = 32  patience = 5", searcher="random")
    j.run_dir.mkdir()
    history = run_search(j)
    best = max(history["epochs"], key=lambda e: e["metric"])
    assert mmnasdsl.load(j.run_dir / "arch.mmnas").is_concrete
    assert (
        history["epochs"][-1]["arch"] == best["arch"]
        or history["epochs"][-1]["metric"] == best["metric"]
    )
    assert sample_architectures([2, 4], 3, seed=1) == sample_architectures([2, 4], 3, seed=1)


def test_split_is_seeded_and_disjoint() -> None:
    m, a = split_rows(100, (4, 1), seed=3)
    assert len(m) == 80 and len(a) == 20 and not set(m) & set(a)
    assert (m, a) == split_rows(100, (4, 1), seed=3) and (m, a) != split_rows(100, (4, 1), 4)


def test_run_dir_rules(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        prepare_run_dir(busy, "a.mmnas", resume=False, marker="checkpoint.pt")
    with pytest.raises(UsageError, match="cannot resume"):
        prepare_run_dir(busy, "a.mmnas", resume=True, marker="checkpoint.pt")


def test_concrete_spec_is_refused(tmp_path: Path, data: Path) -> None:
    _, spec = write_spec(tmp_path, tiny_spec_text("vqa", searchable=False))
    with pytest.raises(UsageError, match="mmnasdsl train"):
        SearchDriver(
            SearchJob(
                spec=spec,
                data=data,
                run_dir=tmp_path,
                settings=search_settings(spec),
                reporter=NullReporter(),
            )
        )


def test_default_run_dir_never_reuses_a_run(tmp_path: Path) -> None:
    from mmnasdsl.train.runs import default_run_dir

    first = default_run_dir("specs/shapes-vqa.mmnas", root=tmp_path)
    assert first == tmp_path / "shapes-vqa"
    first.mkdir()
    assert default_run_dir("x/shapes-vqa.mmnas", root=tmp_path) == first  # empty: reuse
    (first / "arch.mmnas").write_text("")
    assert default_run_dir("shapes-vqa.mmnas", root=tmp_path) == tmp_path / "shapes-vqa-2"
    assert default_run_dir("runs/shapes-vqa/arch.mmnas", root=tmp_path).name == "shapes-vqa-train"


def test_a_prior_starts_theta_at_a_concrete_net(tmp_path: Path, data: Path) -> None:
    """`prior = [ops]`: θ starts at ±strength, so argmax is the prior before any θ step."""
    prior = "prior = [FFN, SA, RSA, GA]  prior_strength = 2"
    j = job(tmp_path, data, f"warmup = 1  epochs = 0  batch = 32  {prior}")
    j.run_dir.mkdir()
    history = run_search(j)
    first = history["epochs"][0]
    assert first["arch"] == {"encoder": ["FFN", "SA"], "decoder": ["RSA", "GA"]}
    e = math.exp(2.0)
    assert first["theta"][0] == pytest.approx([1 / (1 + e**2), e**2 / (1 + e**2)])
    assert first["entropy"][0] < 0.2  # settled on the prior's op


def test_a_prior_file_is_read_relative_to_the_spec(tmp_path: Path, data: Path) -> None:
    concrete = tiny_spec_text("vqa", searchable=False)  # SA FFN | GA RSA
    (tmp_path / "net.mmnas").write_text(concrete)
    j = job(tmp_path, data, 'warmup = 1  epochs = 0  batch = 32  prior = "net.mmnas"')
    j.run_dir.mkdir()
    assert run_search(j)["epochs"][0]["arch"] == {
        "encoder": ["SA", "FFN"],
        "decoder": ["GA", "RSA"],
    }
    (tmp_path / "net.mmnas").write_text(tiny_spec_text("vqa"))  # a search space
    with pytest.raises(UsageError, match="must be a concrete spec"):
        SearchDriver(job(tmp_path, data, 'warmup = 1  batch = 32  prior = "net.mmnas"'))


def test_a_bad_inline_prior_is_a_located_spec_error(tmp_path: Path) -> None:
    with pytest.raises(mmnasdsl.SpecError, match="prior op 3 is 'FFN', not a candidate"):
        mmnasdsl.loads(
            tiny_spec_text("vqa", search="prior = [SA, SA, FFN, GA]").replace("dec * 2", "GA dec"),
            "p.mmnas",
        )
    with pytest.raises(mmnasdsl.SpecError, match="names 2 ops but the spec has 4 blocks"):
        mmnasdsl.loads(tiny_spec_text("vqa", search="prior = [SA, SA]"), "p.mmnas")


def test_temperature_moves_geometrically_over_the_search_epochs() -> None:
    from mmnasdsl.lang.settings import SearchSettings
    from mmnasdsl.search.space import ChoicePoint, SearchSpace

    space = SearchSpace("mmnas", (ChoicePoint("a", ("x", "y")),))
    s = SearchSettings(warmup=2, epochs=5, temperature=1.0, temperature_end=0.0625)
    searcher = OneShotSearcher(space, s, seed=0)
    taus = []
    for epoch in range(7):
        searcher.epoch_start(epoch)
        taus.append(searcher.tau)
    assert taus == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.25, 0.125, 0.0625])


def test_the_full_estimator_and_entropy_in_history(tmp_path: Path, data: Path) -> None:
    j = job(
        tmp_path, data, "warmup = 1  epochs = 1  update_ratio = 2  batch = 16  estimator = full"
    )
    j.run_dir.mkdir()
    history = run_search(j)
    warm, search = history["epochs"]
    assert warm["entropy"] == pytest.approx([1.0] * 4)  # uniform θ before any θ step
    assert search["loss_theta"] is not None and all(0 <= h < 1 for h in search["entropy"])
