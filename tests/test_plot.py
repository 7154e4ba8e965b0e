"""plot.py and `mmnasdsl plot`: a synthetic history.json drawn, broken ones named."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mmnasdsl.commands import render as render_commands
from mmnasdsl.lang.errors import DataError, UsageError
from mmnasdsl.render.plot import last_theta, plot_history, plot_run, read_history


def synthetic_history(
    n_enc: int = 3, n_dec: int = 5, warmup: int = 3, search: int = 6, seed: int = 0
) -> dict[str, Any]:
    """A search that converges: uniform θ in warm-up, then a growing logit on a target op."""
    rng = random.Random(seed)
    blocks = [{"stack": "encoder", "index": i, "choices": ["SA", "FFN"]} for i in range(n_enc)]
    blocks += [
        {"stack": "decoder", "index": i, "choices": ["SA", "RSA", "GA", "FFN"]}
        for i in range(n_dec)
    ]
    target = [rng.randrange(len(b["choices"])) for b in blocks]
    epochs = []
    for e in range(warmup + search):
        step = max(0, e - warmup + 1)
        theta = [
            softmax([0.6 * step * (j == t) for j in range(len(b["choices"]))])
            for b, t in zip(blocks, target, strict=True)
        ]
        epochs.append(
            {
                "epoch": e + 1,
                "phase": "warmup" if e < warmup else "search",
                "theta": theta,
                "loss_w": 2.0 * math.exp(-0.2 * e) + 0.5,
                "loss_theta": None if e < warmup else 1.5 * math.exp(-0.15 * e) + 0.6,
                "metric": 30.0 + 4 * e,
                "metric_name": "accuracy",
                "arch": {},
                "seconds": 1.0,
            }
        )
    return {"spec": "specs/shapes-vqa.mmnas", "blocks": blocks, "epochs": epochs, "done": True}


def softmax(xs: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def write_run(tmp_path: Path, history: Any) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    text = history if isinstance(history, str) else json.dumps(history)
    (run / "history.json").write_text(text)
    return run


@pytest.mark.parametrize(
    ("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_plot_run_writes_the_format_of_the_suffix(
    tmp_path: Path, suffix: str, magic: bytes
) -> None:
    run = write_run(tmp_path, synthetic_history())
    out = plot_run(run, tmp_path / f"search{suffix}")
    assert out.read_bytes().startswith(magic)


def test_figure_has_a_heatmap_per_stack_and_the_curves() -> None:
    fig = plot_history(synthetic_history())
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert "θ, encoder" in titles and "θ, decoder" in titles and "search curves" in titles
    decoder = next(ax for ax in fig.axes if ax.get_title(loc="left") == "θ, decoder")
    image = decoder.get_images()[0].get_array()
    assert image.shape[:2] == (5 * 4 + 4, 9)  # 4 rows per block, a gap between blocks
    labels = [t.get_text() for t in decoder.get_yticklabels()]
    assert labels == ["1", "2", "3", "4", "5"]


def test_entropy_panel_is_one_at_uniform_and_zero_when_settled() -> None:
    from mmnasdsl.render.plot import epoch_entropy

    assert epoch_entropy([[0.25] * 4, [0.5, 0.5], [1.0]], [0, 1, 2]) == pytest.approx(1.0)
    assert epoch_entropy([[1.0, 0.0, 0.0, 0.0]], [0]) == pytest.approx(0.0)
    assert epoch_entropy([[1.0]], [0]) is None  # nothing searchable
    fig = plot_history(synthetic_history())
    panel = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("θ entropy"))
    assert {line.get_label() for line in panel.get_lines()} == {"encoder", "decoder"}
    assert all(0 <= y <= 1 for line in panel.get_lines() for y in line.get_ydata())


def test_warmup_only_history_plots(tmp_path: Path) -> None:
    """A run stopped during warm-up has no θ loss yet; the plot still draws."""
    run = write_run(tmp_path, synthetic_history(warmup=2, search=0))
    assert plot_run(run, tmp_path / "w.png").exists()


def test_last_theta() -> None:
    history = synthetic_history()
    assert last_theta(history) == history["epochs"][-1]["theta"]


def test_missing_history_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothing[/\\]history\.json: no such file"):
        read_history(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"blocks": [], "epochs": []}), "'epochs' is missing or empty"),
        (json.dumps({"blocks": [{"stack": "encoder"}], "epochs": [{}]}), "'blocks' must be"),
    ],
)
def test_malformed_history_names_the_file(tmp_path: Path, content: str, message: str) -> None:
    run = write_run(tmp_path, content)
    with pytest.raises(DataError, match=message) as err:
        read_history(run)
    assert str(run / "history.json") in str(err.value)


def test_theta_that_does_not_fit_the_blocks(tmp_path: Path) -> None:
    history = synthetic_history()
    history["epochs"][2]["theta"][0] = [1.0]
    with pytest.raises(DataError, match=r"epochs\[2\]\.theta"):
        read_history(write_run(tmp_path, history))


def test_unknown_plot_suffix(tmp_path: Path) -> None:
    run = write_run(tmp_path, synthetic_history())
    with pytest.raises(UsageError, match=r"\.png"):
        plot_run(run, tmp_path / "x.dot")


def test_cli_plot(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    render_commands.register(app)
    run = write_run(tmp_path, synthetic_history())
    out = tmp_path / "search.png"
    result = CliRunner().invoke(app, ["plot", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "none"), "-o", str(out)])
    assert isinstance(result.exception, DataError)
