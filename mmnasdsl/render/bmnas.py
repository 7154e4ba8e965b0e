"""Diagrams of BM-NAS spaces and networks, in the house style of `render.diagram`.

Bottom to top: the inputs, one framed row of taps per modality; the cells, one framed
cluster each, with their two inputs x and y, their steps and their output; the head on top.

- A fixed pair is two purple `pair` edges, from the chosen taps (or earlier cells) into the
  cell's x and y. A searched pair is a pale `candidate` edge from every state the cell may
  fuse; given a search's probabilities (`--theta RUNDIR`) each edge is as thick as its
  p(skip) and carries it in its tooltip.
- A step is a box titled with what it computes (`s2 = LinearGLU(s1, x)`: the first input
  is the op's x, the query of ScaleDotAttn), above a row of its candidate ops in their
  colours (the legend's); with θ, each is shaded by its probability and the most likely is
  outlined. Its inputs are edges from x, y or earlier steps (every earlier state, dashed,
  while searched).
- The cell's output `c1` takes the concatenated steps (and x, its residual, dotted);
  the head takes the last `concat` cells.

In the SVG each node is `<g class="node tap|slot|step OPS...|cell|head">` with id
`s<k>.<node id>`, each edge `<g class="edge pair|candidate|inner|output|residual|head">`.
"""

from __future__ import annotations

from html import escape
from typing import Any

import graphviz

from mmnasdsl.lang.errors import MmnasError
from mmnasdsl.render.diagram import (
    CLUSTER_STYLE,
    DRAWERS,
    EDGE_COLOURS,
    _plain_label,
    _space_text,
    _table,
    node_id,
    op_colour,
    tint,
)

ProbMap = dict[str, list[float]]  # choice-point name -> its probabilities


def theta_for(graph: Any, history: dict[str, Any], source: str = "history.json") -> ProbMap:
    """The last epoch's probabilities of a BM-NAS search, by choice-point name (`c1<-a2`,
    `c1.s2`). The run must have searched cells of the graph's names."""
    searched = {str(b.get("stack")) for b in history["blocks"]}
    cells = [a["label"] for _, a in graph.g.nodes(data=True) if a.get("kind") == "cell"]
    if history["blocks"] and not set(cells) <= searched:
        missing = next(c for c in cells if c not in searched)
        raise MmnasError(f"{source} is the search of another space: it has no cell {missing}")
    names = [str(b.get("name", "")) for b in history["blocks"]]
    return dict(zip(names, history["epochs"][-1]["theta"], strict=True))


def _step_label(attrs: dict[str, Any], probs: list[float] | None) -> str:
    """`s2 = LinearGLU(s1, x)` over one cell per candidate op (θ-shaded when given)."""
    ops, inputs = list(attrs["choices"]), attrs["inputs"]
    args = f"({', '.join(inputs)})" if inputs else "(searched)"
    head = f"{attrs['name']} = {ops[0] if len(ops) == 1 else 'op'}{args}"
    best = max(range(len(ops)), key=lambda i: probs[i]) if probs and len(ops) > 1 else -1
    cells = []
    for i, op in enumerate(ops):
        colour = op_colour(op)
        if probs is None:
            cells.append(f'<td bgcolor="{colour}">{escape(op)}</td>')
            continue
        shade = tint(colour, 0.15 + 0.85 * probs[i])
        border = ' border="3"' if i == best else ""
        name = f"<b>{escape(op)}</b>" if i == best else escape(op)
        cells.append(
            f'<td bgcolor="{shade}"{border}>{name}<br/>'
            f'<font point-size="9">{probs[i]:.2f}</font></td>'
        )
    title = f'<tr><td colspan="{len(ops)}" border="0"><b>{escape(head)}</b></td></tr>'
    return _table(title + f"<tr>{''.join(cells)}</tr>")


class FusionDrawer:
    """Adds one BM-NAS graph (`compile.bmnas_graph.FusionGraph`) as cluster `s<k>`."""

    theta_for = staticmethod(theta_for)
    splines = "spline"  # curved edges: the orthogonal router fails on some cell layouts

    def __init__(self, k: int, graph: Any, theta: ProbMap | None, registry: list[str]) -> None:
        self.k, self.graph, self.g = k, graph, graph.g
        self.theta = theta or {}

    def nid(self, node: str) -> str:
        return node_id(self.k, node)

    def draw(self, dot: graphviz.Digraph) -> None:
        with dot.subgraph(name=f"cluster_s{self.k}") as c:
            c.attr(label=self._title(), **CLUSTER_STYLE)
            self._inputs(c)
            for node, attrs in self.g.nodes(data=True):
                if attrs.get("kind") == "cell":
                    self._cell(c, node, attrs)
            c.node(
                self.nid("head"),
                id=self.nid("head"),
                label=_plain_label(f"{self.g.nodes['head']['label']} head"),
                shape="box",
                style="rounded,filled,bold",
                fillcolor="#d9d2e9",
                **{"class": "head"},
            )
        self._edges(dot)

    def _title(self) -> str:
        model = self.graph.spec.model
        name = model.name if model is not None else "bmnas"
        sub = _space_text(self.graph)
        return (
            f"<<b>{escape(name)}</b><br/>"
            f'<font point-size="10" color="#555555">BM-NAS · {sub}</font>>'
        )

    def _inputs(self, c: graphviz.Digraph) -> None:
        """One framed row of taps per modality (taps have no inputs: the bottom rank)."""
        for node, attrs in self.g.nodes(data=True):
            if attrs.get("kind") != "input":
                continue
            with c.subgraph(name=f"cluster_s{self.k}_{node.replace(':', '_')}") as m:
                m.attr(label=escape(attrs["label"]), style="rounded,filled", color="#cccccc")
                m.attr(fillcolor="#f3f3f3", labelloc="b", fontsize="11")
                with m.subgraph() as row:
                    row.attr(rank="same")
                    for tap in attrs["taps"]:
                        self._tap(row, f"tap:{tap}")
                    for a, b in zip(attrs["taps"], attrs["taps"][1:], strict=False):
                        row.edge(self.nid(f"tap:{a}"), self.nid(f"tap:{b}"), style="invis")

    def _tap(self, c: graphviz.Digraph, node: str) -> None:
        a = self.g.nodes[node]
        shape = "x".join(map(str, (a["channels"], *a["dims"])))
        c.node(
            self.nid(node),
            id=self.nid(node),
            label=_plain_label(a["label"], shape),
            shape="box",
            style="rounded,filled",
            fillcolor="#eeeeee",
            **{"class": "tap"},
        )

    def _cell(self, c: graphviz.Digraph, node: str, attrs: dict[str, Any]) -> None:
        name = attrs["label"]
        pair = ", ".join(attrs["inputs"]) if attrs["inputs"] else "searched pair"
        with c.subgraph(name=f"cluster_s{self.k}_cell_{name}") as cell:
            cell.attr(
                label=f"<<b>cell {escape(name)}</b> ({escape(pair)})>",
                style="rounded",
                color="#674ea7",
                labelloc="t",
                fontsize="11",
            )
            for slot in ("x", "y"):
                sid = f"pair:{name}:{slot}"
                cell.node(
                    self.nid(sid),
                    id=self.nid(sid),
                    label=slot,
                    shape="circle",
                    width="0.3",
                    fixedsize="true",
                    **{"class": "slot"},
                )
            for step, sattrs in self.g.nodes(data=True):
                if sattrs.get("kind") == "step" and sattrs["cell"] == name:
                    probs = self.theta.get(f"{name}.{sattrs['name']}")
                    cls = " ".join(["step", *sattrs["choices"]])
                    cell.node(
                        self.nid(step),
                        id=self.nid(step),
                        label=_step_label(sattrs, probs),
                        shape="plain",
                        **{"class": cls},
                    )
            note = f"concat {attrs['concat']} + x, LayerNorm"
            cell.node(
                self.nid(node),
                id=self.nid(node),
                label=_plain_label(name, note),
                shape="box",
                style="rounded,filled",
                fillcolor="#e6e0f3",
                **{"class": "cell"},
            )

    def _edges(self, dot: graphviz.Digraph) -> None:
        for u, v, attrs in self.g.edges(data=True):
            kind = attrs.get("kind", "")
            if kind == "tap":
                continue  # the taps sit in their modality's frame
            style: dict[str, str] = {"class": kind, "arrowsize": "0.6"}
            if kind == "pair":
                style |= {"color": EDGE_COLOURS["pair"], "penwidth": "1.6"}
            elif kind == "candidate":
                style |= self._candidate(u, v)
            elif kind == "inner":
                searched = attrs.get("slot") is None
                style |= {"color": "#999999" if searched else "#444444"}
                if searched:
                    style |= {"style": "dashed"}
            elif kind == "residual":
                style |= {"style": "dotted", "color": "#777777"}
            else:
                style |= {"color": "#444444"}
            dot.edge(self.nid(u), self.nid(v), **style)

    def _candidate(self, u: str, v: str) -> dict[str, str]:
        """A searched pair's edge: pale, as thick as p(skip) when θ is known."""
        cell, source = v.split(":")[1], u.split(":", 1)[1]
        probs = self.theta.get(f"{cell}<-{source}") or self.theta.get(f"{cell}.x<-{source}")
        style = {"color": EDGE_COLOURS["candidate"], "style": "dashed"}
        if probs is not None:
            p = float(probs[-1])
            style |= {"penwidth": f"{0.5 + 3.5 * p:.2f}", "tooltip": f"p(skip) = {p:.2f}"}
            style |= {"style": "solid" if p >= 0.5 else "dashed"}
        return style


DRAWERS.register("bmnas")(FusionDrawer)
