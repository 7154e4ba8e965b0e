"""Diagrams of supernets and searched architectures, in the style of MMnas Figure 3.

Yu et al., "Deep Multimodal Neural Architecture Search" (ACM MM 2020), Figure 3 draws each
searched network as two columns: the encoder over the words and the decoder over the
objects, every block a box coloured by its op, the encoder's output feeding the decoder's
GA blocks. `render` draws that from the supernet graph of `mmnasdsl.compile.graph` (the same graph
`info` reads), so the picture cannot disagree with what `build` and `search` compile:

- one cluster per spec, titled with its `model NAME`, side by side;
- per stack a column, bottom to top: input -> stem -> blocks; the head on top;
- `guide` edges from the guide stream's output to each guide-needing block (drawn into
  the block's left side), `relations` edges from the relation input (into the right side);
- a searchable block is a row of candidate cells; given θ (a search's probabilities),
  each cell is shaded by its probability and the most likely one is outlined.

`write(dot, path)` picks the format from the suffix. `.dot` needs nothing but Python; the
other formats need Graphviz's `dot` program, and say how to install it when it is missing.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import zlib
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any, Protocol

import graphviz
import networkx as nx

from mmnasdsl.lang.errors import MmnasError, UsageError
from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.spec import Ref, Repeat, compress

Theta = list[list[float]]  # one probability vector per block, in block order

# The paper's four ops keep one colour everywhere (diagrams, legend, plots); so do BM-NAS's
# fusion ops and its edge candidates.
OP_COLOURS = {"SA": "#f6b26b", "GA": "#6fa8dc", "RSA": "#e06666", "FFN": "#93c47d"}
FUSION_COLOURS = {
    "Sum": "#ffe599",
    "ScaleDotAttn": "#9fc5e8",
    "LinearGLU": "#b6d7a8",
    "ConcatFC": "#ea9999",
    "skip": "#666666",
    "none": "#d9d9d9",
}
# Ops a user registers get a colour from here, stably by their place in the registry.
FALLBACK_PALETTE = (
    "#b4a7d6",
    "#ffd966",
    "#76a5af",
    "#d5a6bd",
    "#a2c4c9",
    "#c27ba0",
    "#f9cb9c",
    "#8e7cc3",
)
EDGE_COLOURS = {
    "flow": "#444444",
    "guide": "#3d85c6",
    "relations": "#cc0000",
    "pair": "#674ea7",  # BM-NAS: a cell's fused pair
    "candidate": "#b4a7d6",  # BM-NAS: a state a searched cell may fuse
}
FORMATS = (".svg", ".png", ".pdf", ".dot", ".gv")
INSTALL_HINT = (
    "install Graphviz (Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install "
    "graphviz`, conda: `conda install graphviz`), or write a .dot file instead"
)


# One spec's cluster in a figure, whatever its space kind; labelloc "b" puts the title on
# top, as rankdir=BT turns the cluster upside down.
CLUSTER_STYLE = {
    "labelloc": "b",
    "fontsize": "18",
    "style": "rounded",
    "color": "#999999",
    "margin": "12",
}


def node_id(k: int, node: str) -> str:
    """A DOT-safe id of a graph node in the k-th spec's cluster: graphviz reads `a:b` in an
    edge as node a, port b."""
    return f"s{k}.{node.replace(':', '.')}"


class GraphLike(Protocol):
    """What render reads of a `mmnasdsl.graph.SupernetGraph` (kept small for tests)."""

    g: nx.DiGraph
    spec: Any
    search_space_size: int


# ----------------------------------------------------------------------------- colours


def registered_ops() -> list[str]:
    """Names in the op registry, or [] when the ops package cannot be imported."""
    try:
        from mmnasdsl.ops import OPS
    except ImportError:
        return []
    return list(OPS.names())


def op_colour(name: str, registry: Sequence[str] | None = None) -> str:
    """The fill colour of an op: fixed for the paper's ops, else stable per registry slot.

    Unregistered names (a graph from an unchecked spec) fall back to a hash of the name,
    so the same op gets the same colour in every figure.
    """
    if name in OP_COLOURS:
        return OP_COLOURS[name]
    if name in FUSION_COLOURS:
        return FUSION_COLOURS[name]
    extra = [
        n for n in (registry if registry is not None else registered_ops()) if n not in OP_COLOURS
    ]
    slot = extra.index(name) if name in extra else zlib.crc32(name.encode())
    return FALLBACK_PALETTE[slot % len(FALLBACK_PALETTE)]


def tint(colour: str, amount: float) -> str:
    """Blend `colour` with white: amount 1 is the colour, 0 is white (a probability shade)."""
    amount = min(max(amount, 0.0), 1.0)
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(255 - (255 - c) * amount) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


# ------------------------------------------------------------------------------ labels


def _table(rows: str, **attrs: str) -> str:
    base = {"border": "0", "cellborder": "1", "cellspacing": "0", "cellpadding": "3"}
    base.update(attrs)
    attr_text = " ".join(f'{k}="{v}"' for k, v in base.items())
    return f"<<table {attr_text}>{rows}</table>>"


def _op_cell(op: str, colour: str, prob: float | None, best: bool) -> str:
    """One candidate cell: the op name, with its probability when θ is known."""
    text = f"<b>{escape(op)}</b>" if best else escape(op)
    if prob is None:
        return f'<td bgcolor="{colour}" width="44">{text}</td>'
    shade = tint(colour, 0.15 + 0.85 * prob)
    border = ' border="3"' if best else ""
    return (
        f'<td bgcolor="{shade}" width="44"{border}>{text}<br/>'
        f'<font point-size="9">{prob:.2f}</font></td>'
    )


def block_label(
    choices: Sequence[str], probs: Sequence[float] | None, registry: Sequence[str] | None = None
) -> str:
    """HTML-like label of a block: one cell per candidate op (θ-shaded when given)."""
    if probs is not None and len(probs) != len(choices):
        raise MmnasError(
            f"θ has {len(probs)} probabilities for a block with "
            f"{len(choices)} candidates ({' | '.join(choices)})"
        )
    best = max(range(len(choices)), key=lambda i: probs[i]) if probs and len(choices) > 1 else -1
    cells = "".join(
        _op_cell(op, op_colour(op, registry), probs[i] if probs is not None else None, i == best)
        for i, op in enumerate(choices)
    )
    return _table(f"<tr>{cells}</tr>")


def _plain_label(title: str, subtitle: str | None = None) -> str:
    sub = f'<br/><font point-size="9" color="#555555">{escape(subtitle)}</font>' if subtitle else ""
    return f"<{escape(title)}{sub}>"


LEGEND_EDGES = {
    "guide": "⟶ guide stream",
    "relations": "⟶ relation input",
    "pair": "⟶ fused pair",
    "candidate": "⟶ candidate of a searched pair",
}


def legend_label(
    ops: Iterable[str],
    edge_kinds: Iterable[str] = (),
    registry: Sequence[str] | None = None,
    theta: str = "",
) -> str:
    """The figure's legend: a swatch and a name per op drawn, the edge kinds drawn, and how
    to read θ when cells are shaded by it (`theta`: "" none, "ops" on fixed blocks only,
    "choices" when some shaded block has several candidates, whose argmax is bold)."""
    swatches = "".join(
        f'<td bgcolor="{op_colour(op, registry)}" width="40">{escape(op)}</td>' for op in ops
    )
    edges = "".join(
        f'<td border="0"><font color="{EDGE_COLOURS[k]}">{LEGEND_EDGES[k]}</font></td>'
        for k in LEGEND_EDGES
        if k in set(edge_kinds)
    )
    note = (
        '<td border="0"><font color="#555555">cell: p(op) after the last search epoch'
        + (", <b>bold</b> = most likely" if theta == "choices" else "")
        + "</font></td>"
        if theta
        else ""
    )
    return _table(
        f'<tr><td border="0"><b>ops</b></td>{swatches}{edges}{note}</tr>', cellspacing="4"
    )


# ------------------------------------------------------------------------------- graph


def _blocks(g: nx.DiGraph) -> list[str]:
    """Block node ids in block order (graph.py inserts them in `spec.blocks()` order)."""
    return [n for n, a in g.nodes(data=True) if a.get("kind") == "block"]


def _model_name(graph: GraphLike) -> str:
    model = getattr(graph.spec, "model", None)
    if model is not None:
        return str(model.name)
    return Path(str(getattr(graph.spec, "source", "model"))).stem


def _stack_formula(choices: list[tuple[str, ...]]) -> str | None:
    """`(SA FFN) × 6` for a concrete stack that folds into repeats, when it stays short."""
    if not choices or any(len(c) != 1 for c in choices):
        return None
    items = compress([c[0] for c in choices])
    if not any(isinstance(i, Repeat) for i in items):
        return None
    parts = []
    for item in items:
        if isinstance(item, Repeat):
            body = " ".join(r.name for r in item.body if isinstance(r, Ref))
            parts.append(f"({body})×{item.count}" if len(item.body) > 1 else f"{body}×{item.count}")
        elif isinstance(item, Ref):
            parts.append(item.name)
    text = " · ".join(parts)
    return text if len(text) <= 32 else None


def _space_text(graph: GraphLike) -> str:
    """`concrete architecture`, or the search-space size (≈ 2.8 × 10^14 for the paper's)."""
    size = int(graph.search_space_size)
    if size <= 1:
        return "concrete architecture"
    if size < 10**6:
        return f"search space: {size:,} architectures"
    mantissa, exp = f"{size:.1e}".split("e")
    return f"search space: ≈ {mantissa} × 10<sup>{int(exp)}</sup> architectures"


class _Drawer:
    """Adds one supernet graph as a cluster `s<k>` of the figure (ids prefixed to stay unique)."""

    def __init__(self, k: int, graph: GraphLike, theta: Theta | None, registry: list[str]):
        self.k, self.graph, self.g = k, graph, graph.g
        self.registry = registry
        blocks = _blocks(self.g)
        if theta is not None and len(theta) != len(blocks):
            raise MmnasError(
                f"θ has {len(theta)} rows but {_model_name(graph)} has {len(blocks)} blocks"
            )
        self.theta = dict(zip(blocks, theta, strict=True)) if theta is not None else {}

    def nid(self, node: str) -> str:
        return node_id(self.k, node)

    def draw(self, dot: graphviz.Digraph) -> None:
        with dot.subgraph(name=f"cluster_s{self.k}") as c:
            # labelloc "b" puts the title on top: rankdir=BT turns the cluster upside down
            c.attr(label=self._title(), **CLUSTER_STYLE)
            self._columns(c)
            self._loose_nodes(c)
        self._edges(dot)

    def _title(self) -> str:
        """`model NAME` in bold; below it the spec file and the search-space size."""
        source = Path(str(getattr(self.graph.spec, "source", ""))).name
        parts = [escape(source)] if source and source != "<string>" else []
        sub = " · ".join([*parts, _space_text(self.graph)])  # _space_text is HTML already
        return (
            f"<<b>{escape(_model_name(self.graph))}</b><br/>"
            f'<font point-size="10" color="#555555">{sub}</font>>'
        )

    def _streams(self) -> dict[str, list[str]]:
        """Stream name -> its column's nodes bottom-up: input, stem, blocks."""
        cols: dict[str, list[str]] = {}
        stack_rank = {"encoder": 0, "decoder": 1}
        blocks = sorted(
            _blocks(self.g),  # encoders left of decoders, else graph order
            key=lambda n: stack_rank.get(self.g.nodes[n]["stack"], 2),
        )
        for node in blocks:
            cols.setdefault(self.g.nodes[node]["stream"], []).append(node)
        for stream, nodes in cols.items():
            prefix = [n for n in (f"input:{stream}", f"stem:{stream}") if n in self.g]
            cols[stream] = prefix + nodes
        return cols

    def _columns(self, c: graphviz.Digraph) -> None:
        """One vertical column per stream (`group` keeps it straight), inputs on one row.

        The columns are not sub-clusters: dot orders nodes of different clusters as it
        likes, while flat invisible edges within one cluster fix the order left to right.
        """
        streams = self._streams()
        for stream, nodes in streams.items():
            for node in nodes:
                self._node(c, node, group=f"s{self.k}_{stream}")
        row = [nodes[0] for nodes in streams.values() if self._kind(nodes[0]) == "input"]
        relations = self._relation_inputs([n for nodes in streams.values() for n in nodes])
        for node in relations:
            self._node(c, node)
        self._same_rank(c, self._spaced(c, row) + relations)
        self._ruler(c, streams)

    def _spaced(self, c: graphviz.Digraph, row: list[str]) -> list[str]:
        """The input row with an invisible spacer between columns, wide enough for the bus
        of guide edges that runs between them (orthogonal edges get no room of their own).
        """
        n_guide = sum(1 for *_, k in self.g.edges(data="kind") if k == "guide")
        out = row[:1]
        for i, node in enumerate(row[1:], start=1):
            spacer = f"spacer:{i}"
            c.node(
                self.nid(spacer),
                label="",
                shape="none",
                width=f"{0.4 + 0.1 * n_guide:.2f}",
                height="0.1",
            )
            out += [spacer, node]
        return out

    def _same_rank(self, c: graphviz.Digraph, row: list[str]) -> None:
        """Put nodes on one rank, left to right in this order (invisible flat edges)."""
        with c.subgraph() as same:
            same.attr(rank="same")
            for node in row:
                same.node(self.nid(node))
            for u, v in itertools.pairwise(row):
                same.edge(self.nid(u), self.nid(v), style="invis")

    def _ruler(self, c: graphviz.Digraph, streams: dict[str, list[str]]) -> None:
        """Block numbers 1..N in a column at the left, level with block i of every stack.

        One number per row, outside the boxes: edges cannot cover it, and runs of identical
        blocks stay countable.
        """
        columns = [[n for n in nodes if self._kind(n) == "block"] for nodes in streams.values()]
        depth = max((len(col) for col in columns), default=0)
        for i in range(depth):
            c.node(
                f"s{self.k}.row.{i}",
                label=str(i + 1),
                shape="plaintext",
                fontsize="9",
                fontcolor="#777777",
                width="0.2",
                group=f"s{self.k}_ruler",
                id=f"s{self.k}.row.{i}",
                **{"class": "index"},
            )
            self._same_rank(c, [f"row:{i}", *(col[i] for col in columns if i < len(col))])
        for i in range(depth - 1):
            c.edge(f"s{self.k}.row.{i}", f"s{self.k}.row.{i + 1}", style="invis")

    def _kind(self, node: str) -> str:
        return str(self.g.nodes[node].get("kind", ""))

    def _relation_inputs(self, blocks: list[str]) -> list[str]:
        """The relation input nodes feeding any of these blocks."""
        return list(
            dict.fromkeys(
                u for b in blocks for u, _, k in self.g.in_edges(b, data="kind") if k == "relations"
            )
        )

    def _placed(self) -> set[str]:
        streams = self._streams().values()
        blocks = [n for nodes in streams for n in nodes if self.g.nodes[n].get("kind") == "block"]
        return {n for nodes in streams for n in nodes} | set(self._relation_inputs(blocks))

    def _loose_nodes(self, c: graphviz.Digraph) -> None:
        """The head (and any node kind a later graph.py adds) outside the columns."""
        placed = self._placed()
        for node in self.g.nodes:
            if node not in placed:
                self._node(c, node)

    def _node(self, c: graphviz.Digraph, node: str, group: str | None = None) -> None:
        """Declare a node; `group` keeps a column's nodes on one vertical line."""
        attrs = self.g.nodes[node]
        kind = attrs.get("kind", "")
        extra = {"group": group} if group else {}
        if kind == "block":
            probs = self.theta.get(node)
            label = block_label(tuple(attrs["choices"]), probs, self.registry)
            extra["class"] = f"block {attrs['stack']} {' '.join(attrs['choices'])}"
            c.node(
                self.nid(node),
                label=label,
                shape="plain",
                id=self.nid(node),
                **extra,
            )
            return
        extra["class"] = kind
        c.node(self.nid(node), id=self.nid(node), **extra, **self._style(node, attrs))

    def _input_label(self, node: str, attrs: dict[str, Any]) -> str:
        """`text` / `words → encoder` / `(SA FFN) × 6`: the column's caption, at its foot."""
        name = node.split(":", 1)[-1]
        blocks = [n for n in self._streams().get(name, []) if self._kind(n) == "block"]
        stack = self.g.nodes[blocks[0]]["stack"] if blocks else None
        lines = [" → ".join(x for x in (attrs.get("input_kind"), stack) if x)]
        lines.append(_stack_formula([tuple(self.g.nodes[b]["choices"]) for b in blocks]) or "")
        small = "".join(
            f'<br/><font point-size="9" color="#555555">{escape(t)}</font>' for t in lines if t
        )
        return f"<<b>{escape(name)}</b>{small}>"

    def _style(self, node: str, attrs: dict[str, Any]) -> dict[str, str]:
        kind = attrs.get("kind", "")
        label = str(attrs.get("label", node))
        if kind == "input":
            return {
                "label": self._input_label(node, attrs),
                "shape": "box",
                "style": "rounded,filled",
                "fillcolor": "#eeeeee",
            }
        if kind == "stem":
            return {
                "label": _plain_label(label),
                "shape": "box",
                "style": "rounded,filled",
                "fillcolor": "#f3f3f3",
            }
        if kind == "relations":
            return {
                "label": _plain_label("relations", label if label != "relations" else None),
                "shape": "ellipse",
                "style": "filled,dashed",
                "fillcolor": "#fce5e5",
                "color": EDGE_COLOURS["relations"],
            }
        if kind == "head":
            return {
                "label": _plain_label(f"{label} head"),
                "shape": "box",
                "style": "rounded,filled,bold",
                "fillcolor": "#d9d2e9",
            }
        return {"label": _plain_label(label), "shape": "box"}

    def _edges(self, dot: graphviz.Digraph) -> None:
        """Flow edges lay out the columns; guide and relation edges do not move any node."""
        for u, v, attrs in self.g.edges(data=True):
            kind = attrs.get("kind", "flow")
            style = {"color": EDGE_COLOURS.get(kind, "#888888"), "class": kind}
            if kind == "guide":
                style |= {"constraint": "false", "penwidth": "1.1"}
            elif kind == "relations":
                style |= {"constraint": "false", "penwidth": "0.9"}
            elif self._kind(v) != "head":
                style |= {"arrowsize": "0.6", "weight": "100"}  # a straight column
            else:  # into the head: a free rank below it keeps these clear of the columns
                style |= {"arrowsize": "0.6", "minlen": "2"}
            dot.edge(self.nid(u), self.nid(v), **style)


# space kind -> the class that adds one graph of that kind as a cluster; its `theta_for`
# lines a search's history up with a graph of that kind (`render --theta`)
DRAWERS: Registry[Any] = Registry("space kind")
DRAWERS.register("mmnas")(_Drawer)


def _ops_drawn(graphs: Sequence[GraphLike], registry: Sequence[str]) -> list[str]:
    """Every op named in the figure: the paper's four first, then in registry order."""
    seen = {op for gr in graphs for _, ops in gr.g.nodes(data="choices") for op in ops or ()}
    order = [*OP_COLOURS, *FUSION_COLOURS, *registry]
    ranked = sorted(seen, key=lambda op: (order.index(op) if op in order else len(order), op))
    return ranked


def _edge_kinds(graphs: Sequence[GraphLike]) -> set[str]:
    return {k for gr in graphs for _, _, k in gr.g.edges(data="kind")}


def _theta_kind(graphs: Sequence[GraphLike], thetas: list[Theta | None]) -> str:
    """What the legend says about θ: nothing, or whether some shaded block has a choice."""
    shaded = [gr for gr, th in zip(graphs, thetas, strict=True) if th is not None]
    if not shaded:
        return ""
    many = any(len(ch) > 1 for gr in shaded for _, ch in gr.g.nodes(data="choices") if ch)
    return "choices" if many else "ops"


def render(
    graphs: Sequence[GraphLike], theta: Sequence[Theta | None] | None = None
) -> graphviz.Digraph:
    """Draw supernet graphs side by side, one labelled cluster each, with a shared legend.

    Args:
        graphs: `SupernetGraph`s (from `mmnasdsl.graph.build_graph`), drawn left to right.
        theta: per graph, None or its θ (one probability vector per block, block order,
            each aligned with that block's `choices`); shades the candidate cells.

    Returns:
        A `graphviz.Digraph`; `.source` is the DOT text, `write` saves it by suffix.
    """
    if not graphs:
        raise UsageError("nothing to render: give at least one spec")
    thetas = list(theta) if theta is not None else [None] * len(graphs)
    if len(thetas) != len(graphs):
        raise MmnasError(f"got θ for {len(thetas)} graphs but {len(graphs)} graphs to draw")
    registry = registered_ops()
    drawers = [DRAWERS.get(getattr(g.spec, "kind", "mmnas")) for g in graphs]
    dot = graphviz.Digraph("mmnas")
    dot.attr(
        rankdir="BT",
        # right angles suit columns of blocks; a drawer may need curves (BM-NAS cells, where
        # Graphviz's orthogonal router fails on some layouts)
        splines="ortho"
        if all(getattr(d, "splines", "ortho") == "ortho" for d in drawers)
        else "spline",
        nodesep="0.25",
        ranksep="0.18",
        fontname="Helvetica",
        label=legend_label(
            _ops_drawn(graphs, registry),
            _edge_kinds(graphs),
            registry,
            theta=_theta_kind(graphs, thetas),
        ),
        labelloc="b",
    )
    dot.attr("node", fontname="Helvetica", fontsize="11", margin="0.05,0.03", height="0.3")
    dot.attr("edge", arrowsize="0.7")
    for k, (drawer, graph, th) in enumerate(zip(drawers, graphs, thetas, strict=True)):
        drawer(k, graph, th, registry).draw(dot)
    return dot


# ------------------------------------------------------------------------------- theta


def theta_for(graph: GraphLike, history: dict[str, Any], source: str = "history.json") -> Theta:
    """The last epoch's θ of a search, aligned with this graph's blocks and their choices.

    Blocks match by (stack, index) and candidates by op name, so the searched space itself
    shows every candidate's probability, and the concrete `arch.mmnas` of the same run
    shows the probability of the op it kept.

    Raises:
        MmnasError: the run searched a different space (names the file and the block).
    """
    rows = {
        (str(b["stack"]), int(b["index"])): (list(b["choices"]), theta_row)
        for b, theta_row in zip(history["blocks"], history["epochs"][-1]["theta"], strict=True)
    }
    out: Theta = []
    for node in _blocks(graph.g):
        attrs = graph.g.nodes[node]
        key = (str(attrs["stack"]), int(attrs["index"]))
        if key not in rows:
            raise MmnasError(
                f"{source} has no {key[0]} block {key[1] + 1}: it is the search of "
                f"another spec than {_model_name(graph)}"
            )
        choices, probs = rows[key]
        missing = [op for op in attrs["choices"] if op not in choices]
        if missing:
            raise MmnasError(
                f"{source}: {key[0]} block {key[1] + 1} searched "
                f"{' | '.join(choices)}, not {', '.join(missing)}"
            )
        out.append([float(probs[choices.index(op)]) for op in attrs["choices"]])
    return out


_Drawer.theta_for = staticmethod(theta_for)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ output


def output_format(path: str | Path) -> str:
    """The suffix naming the format ('.svg', ...); checked before any slow work is done."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of '{path}': use one of {', '.join(FORMATS)}")
    return suffix


def write(dot: graphviz.Digraph, path: str | Path) -> Path:
    """Write the diagram in the format named by the suffix (.svg, .png, .pdf, .dot/.gv).

    Raises:
        UsageError: an unknown suffix.
        MmnasError: a binary format without Graphviz's `dot` program (says how to get it).
    """
    out = Path(path)
    suffix = output_format(out)
    if suffix in (".dot", ".gv"):
        _write_bytes(out, dot.source.encode("utf-8"))
        return out
    _write_bytes(out, _pipe(dot, suffix[1:], out))
    return out


def _pipe(dot: graphviz.Digraph, fmt: str, out: Path) -> bytes:
    """Run Graphviz; a missing `dot` becomes an error that says how to install it."""
    if shutil.which("dot") is None:
        raise MmnasError(
            f"cannot write '{out}': Graphviz's `dot` program is not on PATH; {INSTALL_HINT}"
        )
    if fmt == "png":
        dot = dot.copy()
        dot.attr(dpi="110")
    try:
        return dot.pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise MmnasError(
            f"cannot write '{out}': Graphviz's `dot` program was not found; {INSTALL_HINT}"
        ) from None
    except (subprocess.CalledProcessError, graphviz.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        raise MmnasError(f"Graphviz failed to write '{out}': {detail}") from None


def _write_bytes(out: Path, data: bytes) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as exc:
        raise MmnasError(f"cannot write '{out}': {exc.strerror or exc}") from None
