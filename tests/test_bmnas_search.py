"""BM-NAS search: the derivation rules on hand-made weights, the write-back, DARTS's answer,
the driver's per-epoch alternation and kept genotype, and the planted pair found."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import mmnasdsl
from mmnasdsl.lang.settings import search_settings
from mmnasdsl.search import SEARCHERS, SearchJob, run_search, space_of
from mmnasdsl.search.bmnas import BMNasSearch
from mmnasdsl.search.space import SPACES, derive
from mmnasdsl.train.progress import NullReporter

SPACE = """space bmnas
model m {
  channels = 4
  length = 2
  dropout = 0.0%s
}
input a {
  t0 = tap(channels = 3)
  t1 = tap(channels = 3)
}
input b {
  t2 = tap(channels = 3)
  t3 = tap(channels = 3)
}
pool fusion = Sum | ConcatFC | LinearGLU
cell c1 = fusion
cell c2 = fusion
cell c3 = fusion * 2
head classify(classes = 2)
"""


def space_and_rows(extra: str = ""):
    spec = mmnasdsl.loads(SPACE % extra)
    space = space_of(spec)
    return spec, space, {p.name: i for i, p in enumerate(space.infos)}


def probs(space, rows: dict, skip: dict[str, float], ops: dict[str, list[float]] | None = None):
    """Per point: an edge [1 - p, p] with p = skip[name] (default 0.5); an op row (default
    uniform)."""
    out = []
    for p in space.infos:
        if p.role == "edge":
            s = skip.get(p.name, 0.5)
            out.append([1 - s, s])
        else:
            out.append((ops or {}).get(p.name, [1 / len(p.candidates)] * len(p.candidates)))
    return out


def plans(spec, space, p):
    return BMNasSearch().plans(space, derive(space, p))


def test_the_pair_of_largest_skip_product_wins_and_the_lower_state_is_x():
    spec, space, rows = space_and_rows()
    skip = {"c1<-t0": 0.9, "c1<-t1": 0.8, "c1<-t2": 0.1, "c1<-t3": 0.85}
    c1 = plans(spec, space, probs(space, rows, skip))[0]
    assert c1.inputs == ("t0", "t3")  # 0.9 * 0.85 > 0.9 * 0.8


def test_a_pair_inside_the_union_of_earlier_pairs_is_skipped():
    spec, space, rows = space_and_rows()
    skip = {
        "c1<-t0": 0.9,
        "c1<-t1": 0.9,  # c1: (t0, t1)
        "c2<-t2": 0.9,
        "c2<-t3": 0.9,  # c2: (t2, t3)
        # c3 prefers (t1, t2): no earlier cell chose it, but both were chosen: skipped
        "c3<-t1": 0.95,
        "c3<-t2": 0.95,
        "c3<-t3": 0.6,
        "c3<-c1": 0.1,
        "c3<-c2": 0.1,
    }
    c1, c2, c3 = plans(spec, space, probs(space, rows, skip))
    assert (c1.inputs, c2.inputs) == (("t0", "t1"), ("t2", "t3"))
    # every pair of taps is inside {t0, t1, t2, t3}; of the rest, 0.95 * 0.1 ties first
    assert c3.inputs == ("t1", "c1")


def test_exclusion_is_by_union_and_earlier_cells_outputs_are_candidates():
    spec, space, rows = space_and_rows()
    skip = {
        "c1<-t0": 0.9,
        "c1<-t1": 0.9,
        "c2<-t0": 0.95,
        "c2<-t1": 0.95,
        "c2<-c1": 0.7,
        "c2<-t3": 0.2,
    }
    c1, c2, _ = plans(spec, space, probs(space, rows, skip))
    assert c1.inputs == ("t0", "t1")
    assert c2.inputs == ("t0", "c1")  # (t0, t1) is excluded; c1's output is a candidate


def test_ties_go_to_the_first_pair_in_state_order():
    spec, space, rows = space_and_rows()
    c1, c2, c3 = plans(spec, space, probs(space, rows, {}))
    assert c1.inputs == ("t0", "t1")
    assert c2.inputs == ("t0", "t2")  # (t0, t1) excluded
    assert c3.inputs == ("t0", "t3")  # (t0, t2) too: both in {t0, t1, t2}


def test_steps_keep_their_two_heaviest_inputs_in_state_order_and_their_argmax_op():
    spec, space, rows = space_and_rows()
    skip = {"c3.s2<-x": 0.2, "c3.s2<-y": 0.7, "c3.s2<-s1": 0.9}
    ops = {"c3.s2": [0.2, 0.3, 0.5], "c3.s1": [0.5, 0.3, 0.2]}
    c3 = plans(spec, space, probs(space, rows, skip, ops))[2]
    assert [s.inputs for s in c3.steps] == [("x", "y"), ("y", "s1")]
    assert [s.ops for s in c3.steps] == [("Sum",), ("LinearGLU",)]


def test_separate_inputs_give_an_ordered_pair():
    spec, space, rows = space_and_rows("\n  op_inputs = separate")
    assert "c1.x<-t0" in rows and "c1.y<-t0" in rows
    skip = {"c1.x<-t3": 0.9, "c1.y<-t0": 0.9, "c1.x<-t0": 0.6, "c1.y<-t3": 0.1}
    skip |= {"c3.s2.x<-s1": 0.9, "c3.s2.y<-x": 0.8}
    c1, _, c3 = plans(spec, space, probs(space, rows, skip))
    assert c1.inputs == ("t3", "t0")
    assert c3.steps[1].inputs == ("s1", "x")


def test_an_architecture_is_written_as_its_derivation():
    spec, space, rows = space_and_rows()
    p = probs(space, rows, {"c1<-t2": 0.9, "c1<-t3": 0.9})
    arch = derive(space, p)
    assert [arch[rows[f"c1<-{t}"]] for t in ("t0", "t1", "t2", "t3")] == [0, 0, 1, 1]
    kind = SPACES.get("bmnas")
    concrete = kind.concrete(spec, space, arch)
    assert concrete.is_concrete and concrete.cells()[0].inputs == ("t2", "t3")
    assert kind.describe(spec, space, arch)["cells"][0]["inputs"] == ["t2", "t3"]
    hard = [[float(k == i) for k in range(len(r))] for r, i in zip(p, arch, strict=True)]
    assert derive(space, hard) == arch
    uniform = [0] * len(arch)  # no skip anywhere: still a valid network (the first pairs)
    assert kind.concrete(spec, space, uniform).is_concrete


def test_darts_answers_with_the_derivation():
    spec, space, rows = space_and_rows()
    searcher = SEARCHERS.get("darts")(space, search_settings(spec), 0)
    with torch.no_grad():
        searcher.alpha.rows[rows["c1<-t1"]].copy_(torch.tensor([0.0, 3.0]))
        searcher.alpha.rows[rows["c1<-t3"]].copy_(torch.tensor([0.0, 2.0]))
    assert searcher.best() == derive(space, searcher.probabilities())
    assert SPACES.get("bmnas").plans(space, searcher.best())[0].inputs == ("t1", "t3")


# ------------------------------------------------------------------------ the driver

PLANTED = """space bmnas
model fast {
  channels = 8
  length = 1
  dropout = 0.0
}
input a {
  a0 = tap(channels = 4)
  a1 = tap(channels = 4)
  a2 = tap(channels = 4)
}
input b {
  b0 = tap(channels = 4)
  b1 = tap(channels = 4)
  b2 = tap(channels = 4)
}
cell c1 = ConcatFC | LinearGLU
head classify(classes = 2)
data xor(pair = [a2, b0], samples = 4000, seed = 1)
search {
  warmup = 0
  epochs = %d
  alternate = epochs
  keep = best
  patience = 10
  batch = 64
  lr = 0.01
  theta_lr = 0.03
}
"""


def search(tmp_path: Path, monkeypatch, epochs: int, name: str = "run") -> dict:
    monkeypatch.setenv("MMNASDSL_DATA", str(tmp_path / "data"))
    from mmnasdsl.data import resolve

    spec = mmnasdsl.loads(PLANTED % epochs, "planted.mmnas")
    job = SearchJob(
        spec=spec,
        data=resolve(spec, "taps"),
        run_dir=tmp_path / name,
        seed=0,
        reporter=NullReporter(),
        settings=search_settings(spec),
        searcher="darts",
    )
    return run_search(job)


def test_alternation_by_epochs_runs_one_theta_step_per_da_batch(tmp_path, monkeypatch):
    from mmnasdsl.search.darts import DartsSearcher
    from mmnasdsl.search.driver import SearchDriver

    calls: list[str] = []
    w_step, learn = SearchDriver.step, DartsSearcher.learn
    monkeypatch.setattr(SearchDriver, "step", lambda s, b: calls.append("W") or w_step(s, b))
    monkeypatch.setattr(DartsSearcher, "learn", lambda s, b, g: calls.append("θ") or learn(s, b, g))
    history = search(tmp_path, monkeypatch, epochs=1)
    # 3200 D_m samples in batches of 64, then the 800 of D_a: 50 W steps, then 13 θ steps
    assert "".join(calls) == "W" * 50 + "θ" * 13
    record = history["epochs"][0]
    assert record["loss_theta"] is not None and "candidate" in record
    assert len(history["blocks"]) == 9 and history["blocks"][0]["name"] == "c1<-a0"


def test_the_planted_pair_is_found_in_seconds(tmp_path, monkeypatch):
    """specs/bmnas-xor.mmnas's task at its smallest: one cell, 4-d taps, 4 epochs."""
    history = search(tmp_path, monkeypatch, epochs=4)
    arch = history["epochs"][-1]["arch"]
    assert arch["cells"][0]["inputs"] == ["a2", "b0"], arch
    best = max(e["metric"] for e in history["epochs"])
    assert best > 80  # the kept candidate predicts the XOR
    text = (tmp_path / "run" / "arch.mmnas").read_text()
    assert "cell c1(a2, b0)" in text and "best-scored" in text
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert saved["epochs"][-1]["arch"] == arch
