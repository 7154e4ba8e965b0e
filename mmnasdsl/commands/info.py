"""`mmnasdsl info SPEC`: the size of a spec's search space and of its networks.

BM-NAS specs (`space bmnas`): one row per tap (its adapter) and per cell step, the totals
split into adapters / cells / head, and in `--json` the `cells`, each with the `inputs` of
its pair by the spec's names (None while searched) and its steps.

A table with one row per block (candidates, parameters and forward FLOPs per candidate)
and the totals: search-space size, parameters split into embedding / encoder / decoder /
head (for a searchable spec: the network of the largest choice per block, plus the whole
supernet), and forward FLOPs per sample at the inputs' max sizes. `--json` prints the
same as one JSON object for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmnasdsl.lang.settings import DEFAULT_VOCAB

if TYPE_CHECKING:  # torch loads when `info` runs, not when the CLI starts
    from mmnasdsl.compile.graph import SupernetGraph


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


def summary(graph: SupernetGraph) -> dict[str, Any]:
    """Everything `info` shows, as plain JSON-able Python."""
    from mmnasdsl.compile.graph import block_id

    arch = graph.largest_arch()
    params = graph.params(arch)
    params["supernet_total"] = graph.params()["total"]
    s = graph.settings
    blocks = []
    for b in graph.blocks:
        attrs = graph.g.nodes[block_id(b)]
        blocks.append(
            {
                "stack": b.stack,
                "index": b.index,
                "stream": b.stream,
                "choices": list(b.choices),
                "params": dict(attrs["params"]),
                "flops": dict(attrs["flops"]),
            }
        )
    return {
        "spec": graph.spec.source,
        "task": graph.task_name,
        "concrete": graph.spec.is_concrete,
        "search_space_size": graph.search_space_size,
        "settings": {
            "d_model": s.d_model,
            "heads": s.n_heads,
            "d_head": s.d_head,
            "d_ffn": s.d_ffn,
            "d_fused": s.d_fused,
            "vocab": graph.vocab_size,
        },
        "input_sizes": graph.lengths(),
        "params": params,
        "flops_per_sample": graph.flops(arch),
        "blocks": blocks,
    }


def per_choice(values: dict[str, int]) -> str:
    return "  ".join(f"{op} {human(v)}" for op, v in values.items())


def print_table(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{info['spec']} ({info['task']})", title_justify="left")
    for col, justify in (
        ("stack", "left"),
        ("#", "right"),
        ("choices", "left"),
        ("params", "left"),
        ("FLOPs/sample", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for b in info["blocks"]:
        table.add_row(
            b["stack"],
            str(b["index"]),
            " | ".join(b["choices"]),
            per_choice(b["params"]),
            per_choice(b["flops"]),
        )
    console.print(table)
    p = info["params"]
    which = "network" if info["concrete"] else "largest choice per block"
    size = info["search_space_size"]
    console.print(f"search space: {size:,} architecture{'' if size == 1 else 's'}")
    console.print(
        f"params ({which}): {p['total']:,} = embedding {p['embedding']:,} + "
        f"encoder {p['encoder']:,} + decoder {p['decoder']:,} + head {p['head']:,}"
    )
    if not info["concrete"]:
        console.print(f"params (supernet, all candidates): {p['supernet_total']:,}")
    sizes = ", ".join(f"{k} {v}" for k, v in info["input_sizes"].items())
    console.print(f"forward FLOPs per sample ({sizes}): {human(info['flops_per_sample'])}")


def print_bmnas_table(info: dict[str, Any]) -> None:
    """A BM-NAS spec: one row per tap (its adapter), one per cell step, then the totals."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{info['spec']} ({info['task']})", title_justify="left")
    for col in ("where", "what", "choices", "params", "FLOPs/sample"):
        table.add_column(col)
    for tap in info["taps"]:
        shape = "x".join(map(str, tap["shape"]))
        table.add_row(
            f"{tap['modality']}.{tap['name']}",
            f"adapter {shape}",
            "",
            human(tap["params"]),
            human(tap["flops"]),
        )
    for cell in info["cells"]:
        pair = ", ".join(cell["inputs"]) if cell["inputs"] else "searched"
        table.add_row(cell["name"], f"pair ({pair})", "", human(cell["params"]), "")
        for st in cell["steps"]:
            inputs = ", ".join(st["inputs"]) if st["inputs"] else "searched"
            table.add_row(
                f"{cell['name']}.{st['name']}",
                f"inputs ({inputs})",
                " | ".join(st["choices"]),
                per_choice(st["params"]),
                per_choice(st["flops"]),
            )
    console.print(table)
    p, size = info["params"], info["search_space_size"]
    which = "network" if info["concrete"] else "largest choice per step"
    console.print(f"search space: {size:,} architecture{'' if size == 1 else 's'}")
    console.print(
        f"params ({which}): {p['total']:,} = adapters {p['adapters']:,} + cells "
        f"{p['cells']:,} + head {p['head']:,}"
    )
    if not info["concrete"]:
        console.print(f"params (supernet, all candidates): {p['supernet_total']:,}")
    console.print(f"forward FLOPs per sample: {human(info['flops_per_sample'])}")


SpecArg = Annotated[Path, typer.Argument(help="a .mmnas spec")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]
MAX_VOCAB = 10_000_000  # word vocabulary and answers (the VQA head admits as many)
VocabOpt = Annotated[
    int, typer.Option("--vocab", min=1, max=MAX_VOCAB, help="word vocabulary size")
]
AnswersOpt = Annotated[
    int | None,
    typer.Option(
        "--answers",
        min=1,
        max=MAX_VOCAB,
        help="VQA answers (default: the head's answers option)",
    ),
]
WidthOpt = Annotated[
    int | None,
    typer.Option("--d-model", min=8, max=8192, help="width override (e.g. the search width)"),
]


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        spec: SpecArg,
        as_json: JsonOpt = False,
        vocab: VocabOpt = DEFAULT_VOCAB,
        answers: AnswersOpt = None,
        d_model: WidthOpt = None,
    ) -> None:
        """Search-space size, parameters and FLOPs of a spec, per block and in total."""
        from mmnasdsl import load
        from mmnasdsl.compile.graph import build_graph

        graph = build_graph(load(spec), vocab_size=vocab, num_answers=answers, d_model=d_model)
        kind = graph.spec.kind
        data = graph.summary() if kind == "bmnas" else summary(graph)
        if as_json:
            typer.echo(json.dumps(data, indent=2))
        elif kind == "bmnas":
            print_bmnas_table(data)
        else:
            print_table(data)
