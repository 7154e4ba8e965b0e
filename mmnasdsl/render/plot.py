"""Plots of a search run: θ per block over the epochs, and the loss/metric curves.

Reads `RUNDIR/history.json` (docs/interfaces.md "Run directories"), written by the
one-shot search of MMnas (Yu et al., ACM MM 2020, §4, Algorithm 1) after every epoch.

- One θ heatmap per stack: a band of rows per block, one row per candidate op, one column
  per epoch; a cell is that op's colour (the same as in `render`) shaded by its
  probability, so the winning op of every block reads as the dark row of its band, and a
  block that has not decided shows as a pale band. A line marks the end of the warm-up.
- The curves: the W loss (on D_m), the θ loss (on D_a, search phase only) and the D_a
  metric on a second axis.

matplotlib runs on the Agg backend: no display is needed, and nothing here opens a window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mmnasdsl.lang.errors import DataError, MmnasError, UsageError
from mmnasdsl.render.diagram import OP_COLOURS, op_colour, registered_ops, tint

PLOT_FORMATS = (".png", ".svg", ".pdf")


# ------------------------------------------------------------------------------ history


def history_path(rundir: str | Path) -> Path:
    """`RUNDIR/history.json`; a path to the file itself is accepted too."""
    path = Path(rundir)
    return path if path.suffix == ".json" else path / "history.json"


def read_history(rundir: str | Path) -> dict[str, Any]:
    """Load and validate history.json, so a broken run fails here, naming the file.

    Raises:
        DataError: the file is missing, not JSON, or not shaped as docs/interfaces.md says.
    """
    path = history_path(rundir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such file (is {path.parent} a search run directory?)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    _validate(data, path)
    return data


def _validate(data: Any, path: Path) -> None:
    """Check the parts plot and render read: blocks, and per epoch θ rows that fit them."""
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'blocks' and 'epochs'")
    blocks, epochs = data.get("blocks"), data.get("epochs")
    if not isinstance(blocks, list) or not all(_is_block(b) for b in blocks):
        raise DataError(f"{path}: 'blocks' must be a list of {{stack, index, choices}}")
    if not isinstance(epochs, list) or not epochs:
        raise DataError(f"{path}: 'epochs' is missing or empty (has the search run an epoch?)")
    widths = [len(b["choices"]) for b in blocks]
    for i, rec in enumerate(epochs):
        theta = rec.get("theta") if isinstance(rec, dict) else None
        if (
            not isinstance(theta, list)
            or [len(r) if isinstance(r, list) else -1 for r in theta] != widths
        ):
            raise DataError(
                f"{path}: epochs[{i}].theta must hold one probability per "
                f"candidate of each of the {len(blocks)} blocks"
            )
        if not all(isinstance(p, int | float) for row in theta for p in row):
            raise DataError(f"{path}: epochs[{i}].theta holds a value that is not a number")


def _is_block(b: Any) -> bool:
    return (
        isinstance(b, dict)
        and isinstance(b.get("choices"), list)
        and bool(b["choices"])
        and b.get("stack") is not None
        and isinstance(b.get("index"), int)
    )


def last_theta(history: dict[str, Any]) -> list[list[float]]:
    """θ after the last recorded epoch (what the argmax architecture was taken from)."""
    return [[float(p) for p in row] for row in history["epochs"][-1]["theta"]]


# -------------------------------------------------------------------------------- plots


def _stacks(history: dict[str, Any]) -> dict[str, list[int]]:
    """Stack kind -> indices of its blocks in history order (encoder, then decoder)."""
    out: dict[str, list[int]] = {}
    for i, b in enumerate(history["blocks"]):
        out.setdefault(str(b["stack"]), []).append(i)
    return out


def _tint_rgb(colour: str, amount: float) -> tuple[float, float, float]:
    """The op colour shaded by a probability, as `render` shades its cells, in RGB."""
    return to_rgb(tint(colour, amount))


def _heatmap_image(
    history: dict[str, Any], rows: list[int], registry: list[str]
) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """RGB image (rows = (block, op) with a white gap between blocks, cols = epochs)."""
    epochs = history["epochs"]
    lines: list[list[tuple[float, float, float]]] = []
    ticks: list[tuple[float, str]] = []
    for i in rows:
        block = history["blocks"][i]
        start = len(lines)
        for j in _drawn(block):
            colour = op_colour(block["choices"][j], registry)
            lines.append([_tint_rgb(colour, e["theta"][i][j]) for e in epochs])
        ticks.append(((start + len(lines) - 1) / 2, _tick(block)))
        lines.append([(1.0, 1.0, 1.0)] * len(epochs))
    return np.array(lines[:-1]), ticks


EDGE = ["none", "skip"]  # a BM-NAS edge: drawn as one row, p(skip)


def _drawn(block: dict[str, Any]) -> list[int]:
    """The candidates drawn as rows: all of a block's, only "skip" of a BM-NAS edge."""
    return [1] if list(block["choices"]) == EDGE else list(range(len(block["choices"])))


def _tick(block: dict[str, Any]) -> str:
    """A row band's label: the block number, or a named point's name within its stack
    (BM-NAS: `←a2` for the pair's edge from a2, `s2←s1`, `s2` for step 2's op)."""
    name = block.get("name")
    if not name:
        return str(block["index"] + 1)
    stack = str(block["stack"])
    short = name[len(stack) :].lstrip(".") if name.startswith(stack) else name
    return short.replace("<-", "←") or name


def _warmup_end(history: dict[str, Any]) -> int:
    """Number of warm-up epochs at the start of the history."""
    n = 0
    for rec in history["epochs"]:
        if rec.get("phase") not in ("warmup", "warm-up"):
            break
        n += 1
    return n


def plot_theta(
    ax: Axes, history: dict[str, Any], stack: str, rows: list[int], registry: list[str]
) -> None:
    """One stack's θ heatmap: dark cells are likely ops; each band is one block."""
    image, ticks = _heatmap_image(history, rows, registry)
    n_epochs = image.shape[1]
    ax.imshow(
        image,
        aspect="auto",
        interpolation="nearest",
        extent=(0.5, n_epochs + 0.5, image.shape[0] - 0.5, -0.5),
    )
    ax.set_yticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=7)
    named = any(history["blocks"][i].get("name") for i in rows)
    ax.set_ylabel(f"{stack} {'choice' if named else 'block'}", fontsize=9)
    ax.set_title(f"θ, {stack}", fontsize=10, loc="left")
    _final_ops(ax, history, rows, ticks, registry)
    ax.set_xticks(_epoch_ticks(history))
    warm = _warmup_end(history)
    if 0 < warm < n_epochs:
        ax.axvline(warm + 0.5, color="#333333", lw=1.0, ls="--")
    ax.tick_params(axis="x", labelsize=8)


def _final_ops(
    ax: Axes,
    history: dict[str, Any],
    rows: list[int],
    ticks: list[tuple[float, str]],
    registry: list[str],
) -> None:
    """Name each block's most likely op after the last epoch, right of its band (a BM-NAS
    edge: its p(skip))."""
    theta = history["epochs"][-1]["theta"]
    x = len(history["epochs"]) + 0.7
    for i, (y, _) in zip(rows, ticks, strict=True):
        choices = history["blocks"][i]["choices"]
        best = max(range(len(choices)), key=lambda j: theta[i][j])
        edge = list(choices) == EDGE
        text = f"{theta[i][1]:.2f}" if edge else choices[best]
        colour = "#eeeeee" if edge else op_colour(choices[best], registry)
        ax.text(
            x,
            y,
            text,
            fontsize=7,
            va="center",
            ha="left",
            fontweight="bold",
            color="#222222",
            clip_on=False,
            bbox={"boxstyle": "square,pad=0.15", "lw": 0, "fc": colour},
        )


def _epoch_ticks(history: dict[str, Any]) -> list[int]:
    n = len(history["epochs"])
    step = max(1, int(np.ceil(n / 12)))
    return list(range(1, n + 1, step))


def plot_curves(ax: Axes, history: dict[str, Any]) -> None:
    """W loss and θ loss (left axis) and the D_a metric (right axis) per epoch."""
    epochs = [int(e.get("epoch", i + 1)) for i, e in enumerate(history["epochs"])]
    _line(ax, epochs, [e.get("loss_w") for e in history["epochs"]], "W loss (D_m)", "#444444")
    _line(ax, epochs, [e.get("loss_theta") for e in history["epochs"]], "θ loss (D_a)", "#cc0000")
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_ylabel("loss", fontsize=9)
    ax.set_xticks(_epoch_ticks(history))
    warm = _warmup_end(history)
    if warm:
        ax.axvspan(0.5, warm + 0.5, color="#eeeeee", zorder=0, label="warm-up")
    handles, labels = ax.get_legend_handles_labels()
    metric = [e.get("metric") for e in history["epochs"]]
    if any(isinstance(m, int | float) for m in metric):
        name = next(
            (e.get("metric_name") for e in history["epochs"] if e.get("metric_name")), "metric"
        )
        right = ax.twinx()
        _line(right, epochs, metric, f"{name} (D_a)", "#3d85c6")
        right.set_ylabel(str(name), fontsize=9, color="#3d85c6")
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(  # above the axes, right of the title: curves never hide behind it
        handles,
        labels,
        fontsize=8,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=len(labels),
        frameon=False,
        borderaxespad=0.2,
        handlelength=1.5,
    )
    ax.set_title("search curves", fontsize=10, loc="left")


def epoch_entropy(theta: list[list[float]], rows: list[int]) -> float | None:
    """Mean over the searchable rows of entropy(p) / log(#candidates): 1 uniform, 0 settled."""
    values = []
    for i in rows:
        p = np.asarray(theta[i], dtype=float)
        if len(p) > 1:
            q = p[p > 0]
            values.append(float(-(q * np.log(q)).sum() / np.log(len(p))))
    return float(np.mean(values)) if values else None


STACK_COLOURS = ("#6aa84f", "#674ea7", "#e69138", "#45818e")


def plot_entropy(ax: Axes, history: dict[str, Any]) -> None:
    """How settled θ is: per stack, the mean normalised entropy of its blocks per epoch."""
    epochs = [int(e.get("epoch", i + 1)) for i, e in enumerate(history["epochs"])]
    for k, (stack, rows) in enumerate(_stacks(history).items()):
        ys = [epoch_entropy(e["theta"], rows) for e in history["epochs"]]
        _line(ax, epochs, ys, stack, STACK_COLOURS[k % len(STACK_COLOURS)])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(_epoch_ticks(history))
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_ylabel("entropy", fontsize=9)
    warm = _warmup_end(history)
    if warm:
        ax.axvspan(0.5, warm + 0.5, color="#eeeeee", zorder=0)
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4, frameon=False)
    ax.set_title(
        "θ entropy per block / log(#choices): 1 uniform, 0 settled", fontsize=10, loc="left"
    )


def _line(ax: Axes, xs: list[int], ys: list[Any], label: str, colour: str) -> None:
    """Plot the numeric points only (θ loss is null during warm-up)."""
    pts = [(x, float(y)) for x, y in zip(xs, ys, strict=True) if isinstance(y, int | float)]
    if pts:
        ax.plot(*zip(*pts, strict=True), marker="o", ms=3, lw=1.5, color=colour, label=label)


def _op_legend(ax: Axes, history: dict[str, Any], registry: list[str]) -> None:
    """Op colours above the first heatmap, right-aligned (the title is left-aligned)."""
    seen = list(dict.fromkeys(op for b in history["blocks"] for op in b["choices"]))
    order = [*OP_COLOURS, *registry]  # the legend order of `render`
    ops = sorted(seen, key=lambda op: order.index(op) if op in order else len(order))
    handles = [
        Patch(facecolor=op_colour(op, registry), edgecolor="#333333", label=op) for op in ops
    ]
    ax.legend(
        handles=handles,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=len(ops),
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
        handlelength=1.2,
    )


def plot_history(history: dict[str, Any], title: str | None = None) -> Figure:
    """The whole figure: a θ heatmap per stack (height by its rows), then the curves."""
    registry = registered_ops()
    stacks = _stacks(history)
    heights = [
        sum(len(_drawn(history["blocks"][i])) + 1 for i in rows) * 0.12 for rows in stacks.values()
    ]
    heights = [max(h, 1.2) for h in heights] + [1.6, 2.6]
    width = min(max(7.0, 2.5 + 0.3 * len(history["epochs"])), 14.0)
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(width, sum(heights) + 1.6),
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
    )
    axes = np.atleast_1d(axes)
    for ax, (stack, rows) in zip(axes, stacks.items(), strict=False):
        plot_theta(ax, history, stack, rows, registry)
    plot_entropy(axes[-2], history)
    plot_curves(axes[-1], history)
    fig.suptitle(title or _title(history), fontsize=11, x=0.02, ha="left")
    _op_legend(axes[0], history, registry)
    return fig


def _title(history: dict[str, Any]) -> str:
    spec = Path(str(history.get("spec", "search"))).name
    n = len(history["epochs"])
    arch = history["epochs"][-1].get("arch")
    if isinstance(arch, dict) and "cells" in arch:  # BM-NAS: the derived pairs, not an argmax
        cells = ", ".join(f"{c['name']}({', '.join(c['inputs'])})" for c in arch["cells"])
        return (
            f"search of {spec}: {n} epoch{'s' if n != 1 else ''}; answer {cells}"
            "\nθ: p(skip) per edge (←state), p(op) per step; darker = more probable"
        )
    return (
        f"search of {spec}: {n} epoch{'s' if n != 1 else ''} ({_warmup_end(history)} warm-up)"
        "\nθ: one row per candidate op, darker = more probable; right: the argmax"
    )


def plot_run(rundir: str | Path, out: str | Path) -> Path:
    """Read RUNDIR/history.json and save the plot to `out` (format by suffix)."""
    target = Path(out)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise UsageError(
            f"cannot tell the format of '{target}': use one of {', '.join(PLOT_FORMATS)}"
        )
    fig = plot_history(read_history(rundir))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=130)
    except OSError as exc:
        raise MmnasError(f"cannot write '{target}': {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return target
