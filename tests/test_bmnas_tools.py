"""BM-NAS through the commands: info (cells and their pairs by name), train and eval of a
derived net, render of its cells, plot of a search."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _specs import ROOT
from typer.testing import CliRunner

from mmnasdsl.cli import app

NET = """# a derived net on the planted-pair task
space bmnas
model net {
  channels = 8
  length = 2
  dropout = 0.0
}
input a {
  a0 = tap(channels = 4)
  a2 = tap(channels = 4, length = 3)
}
input b {
  b0 = tap(channels = 4)
}
cell c1(a2, b0) = ConcatFC(x, y) LinearGLU(s1, x)
cell c2(a0, c1, concat = 1) = Sum(y, x)
head classify(classes = 2)
data xor(pair = [a2, b0], samples = 200, seed = 3)
train {
  epochs = 1
  batch = 50
  warmup = 0
  decay_at = []
}
"""
runner = CliRunner()


@pytest.fixture
def net(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MMNASDSL_DATA", str(tmp_path / "data"))
    path = tmp_path / "net.mmnas"
    path.write_text(NET)
    return path


def test_info_json_lists_cells_with_their_pairs_by_name(net):
    result = runner.invoke(app, ["info", str(net), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert [(c["name"], c["inputs"]) for c in info["cells"]] == [
        ("c1", ["a2", "b0"]),
        ("c2", ["a0", "c1"]),
    ]
    assert info["cells"][0]["steps"][1] == {
        "name": "s2",
        "inputs": ["s1", "x"],
        "choices": ["LinearGLU"],
        "params": {"LinearGLU": 4 * 64 + 2 * 8 + 2 * 16},
        "flops": {"LinearGLU": 2 * 2 * 16**2},
    }
    assert info["concrete"] and info["search_space_size"] == 1
    assert info["params"]["total"] == info["params"]["supernet_total"]
    space = json.loads(
        runner.invoke(app, ["info", str(ROOT / "specs/bmnas-xor.mmnas"), "--json"]).stdout
    )
    assert space["cells"][0]["inputs"] is None and space["cells"][0]["candidates"][:3] == [
        "a0",
        "a1",
        "a2",
    ]
    table = runner.invoke(app, ["info", str(net)])
    assert table.exit_code == 0 and "adapters" in table.stdout


def test_train_then_eval_a_derived_net(net, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(net), "-o", str(run), "--threads", "1", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and 0 <= metrics["best"]["accuracy"] <= 100
    assert {"f1_weighted", "f1_macro", "loss"} <= set(metrics["best"])
    result = runner.invoke(app, ["eval", str(net), str(run / "best.pt"), "--split", "test"])
    assert result.exit_code == 0, result.output
    predictions = json.loads((run / "predictions-test.json").read_text())
    assert len(predictions) == 50 and predictions[0]["label"] in ("same sign", "different sign")


def test_render_draws_the_cells(net, tmp_path):
    out = tmp_path / "cells.svg"
    result = runner.invoke(app, ["render", str(net), "-o", str(out)])
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    for cls in ("tap", "slot", "cell", "head", "step ConcatFC", "step LinearGLU", "step Sum"):
        assert f'class="node {cls}"' in svg, cls
    assert svg.count('class="edge pair"') == 4  # two cells, two inputs each
    assert "s2 = LinearGLU(s1, x)" in svg.replace("&#45;", "-")
    dot = tmp_path / "space.dot"
    assert (
        runner.invoke(
            app, ["render", str(ROOT / "specs/bmnas-xor.mmnas"), "-o", str(dot)]
        ).exit_code
        == 0
    )
    assert len(re.findall(r'class="?candidate', dot.read_text())) == 6 + 7  # c1: 6 taps, c2: +c1


def history(tmp_path: Path) -> Path:
    """A BM-NAS history.json as the driver writes it (two search epochs)."""
    from mmnasdsl.lang.parse import parse
    from mmnasdsl.search.bmnas import BMNasSearch

    spec = parse((ROOT / "specs" / "bmnas-xor.mmnas").read_text(), "specs/bmnas-xor.mmnas")
    kind = BMNasSearch()
    space = kind.space(spec)
    theta = [[0.5, 0.5] if len(p.candidates) == 2 else [0.25] * 4 for p in space.infos]
    arch = kind.derive(space, theta)
    record = {
        "epoch": 1,
        "phase": "search",
        "theta": theta,
        "loss_w": 0.7,
        "loss_theta": 0.69,
        "metric": 50.0,
        "metric_name": "accuracy",
        "arch": kind.describe(spec, space, arch),
        "candidate": kind.describe(spec, space, arch),
        "seconds": 1.0,
    }
    data = {
        "spec": "specs/bmnas-xor.mmnas",
        "searcher": "darts",
        "seed": 0,
        "blocks": kind.points_record(spec, space),
        "epochs": [record, {**record, "epoch": 2}],
        "done": True,
    }
    run = tmp_path / "search"
    run.mkdir()
    (run / "history.json").write_text(json.dumps(data))
    return run


def test_plot_and_render_theta_read_a_bmnas_search(tmp_path):
    run = history(tmp_path)
    result = runner.invoke(app, ["plot", str(run), "-o", str(tmp_path / "plot.png")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "theta.svg"
    result = runner.invoke(
        app, ["render", str(ROOT / "specs/bmnas-xor.mmnas"), "--theta", str(run), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "p(skip) = 0.50" in out.read_text()
