"""render.py and `mmnasdsl render`: SVG content, edges, formats, θ shading, side by side."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import networkx as nx
import pytest
import typer
from typer.testing import CliRunner

from mmnasdsl.commands import render as render_commands
from mmnasdsl.compile.graph import SupernetGraph, build_graph
from mmnasdsl.lang.errors import MmnasError, UsageError
from mmnasdsl.lang.parse import parse
from mmnasdsl.render.diagram import OP_COLOURS, op_colour, render, theta_for, write

SVG = "{http://www.w3.org/2000/svg}"
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` is not installed")

HEADER = """
model {name} {{ d_model = 32 heads = 4 }}
input text = words(max_len = 8, embed = learned(16), lstm)
input image = objects(max = 10, dim = 12, relations = box4)
"""
CONCRETE = (
    HEADER.format(name="small_net")
    + """
encoder text = (SA FFN) * 2
decoder image(guide = text) = GA RSA FFN GA RSA RSA SA
head vqa(answers = 6)
"""
)
SPACE = (
    HEADER.format(name="small_space")
    + """
encoder text = (SA | FFN) * 2
decoder image(guide = text) = (SA | RSA | GA | FFN) * 3
head vqa(answers = 6)
"""
)


def graph(text: str, source: str = "net.mmnas") -> SupernetGraph:
    return build_graph(parse(text, source), vocab_size=30)


def svg_tree(dot: graphviz.Digraph, tmp_path: Path) -> ET.Element:
    """Write with Graphviz (or skip) and parse the SVG as XML."""
    if not HAS_DOT:
        pytest.skip("Graphviz `dot` is not installed")
    out = write(dot, tmp_path / "fig.svg")
    return ET.parse(out).getroot()


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    """<g> elements whose class list holds every word of `cls`."""
    want = set(cls.split())
    return [g for g in root.iter(f"{SVG}g") if want <= set(g.get("class", "").split())]


def texts(el: ET.Element) -> list[str]:
    return [t.text or "" for t in el.iter(f"{SVG}text")]


def test_svg_has_one_labelled_node_per_block(tmp_path: Path) -> None:
    gr = graph(CONCRETE)
    root = svg_tree(render([gr]), tmp_path)
    blocks = groups(root, "node block")
    spec_blocks = gr.spec.blocks()
    assert len(blocks) == len(spec_blocks) == 11
    by_id = {g.get("id"): g for g in blocks}
    for b in spec_blocks:
        node = by_id[f"s0.block.{b.stack}.{b.index}"]
        assert texts(node) == [b.choices[0]]  # the op name is the label
    rows = groups(root, "node index")  # the block numbers, one per row, left of the columns
    assert [texts(r) for r in rows] == [[str(i)] for i in range(1, 8)]


def test_svg_edges_match_the_graph(tmp_path: Path) -> None:
    gr = graph(CONCRETE)
    root = svg_tree(render([gr]), tmp_path)
    n_ga = sum(b.choices == ("GA",) for b in gr.spec.blocks())
    n_rsa = sum(b.choices == ("RSA",) for b in gr.spec.blocks())
    assert len(groups(root, "edge guide")) == n_ga == 2
    assert len(groups(root, "edge relations")) == n_rsa == 3
    guide_titles = {texts_title(g) for g in groups(root, "edge guide")}
    assert all(t.startswith("s0.block.encoder.3->s0.block.decoder.") for t in guide_titles)
    flow = [e for e in gr.g.edges(data="kind") if e[2] == "flow"]
    assert len(groups(root, "edge flow")) == len(flow)
    assert len(groups(root, "node relations")) == 1 and len(groups(root, "node head")) == 1


def texts_title(el: ET.Element) -> str:
    title = el.find(f"{SVG}title")
    return (title.text or "").replace("&#45;", "-") if title is not None else ""


def test_searchable_block_shows_every_candidate(tmp_path: Path) -> None:
    root = svg_tree(render([graph(SPACE)]), tmp_path)
    decoder = groups(root, "node block decoder")
    assert len(decoder) == 3
    for node in decoder:
        assert {"SA", "RSA", "GA", "FFN"} <= set(texts(node))
    assert len(groups(root, "edge guide")) == 3  # each decoder block has a GA candidate
    assert len(groups(root, "edge relations")) == 3


def test_theta_shades_candidates_and_marks_the_argmax() -> None:
    gr = graph(SPACE)
    theta = [[0.9, 0.1], [0.2, 0.8]] + [[0.1, 0.6, 0.2, 0.1]] * 3
    source = render([gr], [theta]).source
    assert "0.90" in source and "0.60" in source
    assert "<b>RSA</b>" in source and "<b>FFN</b>" in source  # the argmax cells in bold

    def block(src: str) -> str:
        return src.split('"s0.block.decoder.0" [')[1].split("]")[0]

    assert op_colour("GA") in block(render([gr]).source)  # without θ, the plain op colour
    assert op_colour("GA") not in block(source)  # with θ, a tint by probability


def test_theta_of_wrong_shape_is_an_error() -> None:
    with pytest.raises(MmnasError, match="θ has 1 rows"):
        render([graph(SPACE)], [[[0.5, 0.5]]])


def test_side_by_side_clusters_are_labelled_with_model_names(tmp_path: Path) -> None:
    dot = render([graph(CONCRETE, "a.mmnas"), graph(SPACE, "b.mmnas")])
    root = svg_tree(dot, tmp_path)
    clusters = [" ".join(texts(c)) for c in groups(root, "cluster")]
    assert any("small_net" in c and "a.mmnas" in c for c in clusters)
    assert any("small_space" in c and "b.mmnas" in c for c in clusters)
    assert len(groups(root, "node block")) == 11 + 5
    legend = " ".join(t for t in texts(root))
    for op in ("SA", "GA", "RSA", "FFN"):
        assert op in legend


def test_unregistered_op_gets_a_fallback_colour_and_a_legend_entry() -> None:
    """A graph built by hand per docs/interfaces.md, with an op the registry does not know."""
    g = nx.DiGraph()
    g.add_node("input:x", kind="input", label="x", input_kind="words")
    g.add_node(
        "block:encoder:0",
        kind="block",
        stack="encoder",
        stream="x",
        index=0,
        choices=("MyOp", "SA"),
        params={},
        guide=None,
    )
    g.add_node("head", kind="head", label="vqa")
    g.add_edge("input:x", "block:encoder:0", kind="flow")
    g.add_edge("block:encoder:0", "head", kind="flow")

    class Fake:
        spec = parse(HEADER.format(name="custom"), "custom.mmnas")
        search_space_size = 2

    Fake.g = g
    source = render([Fake()]).source
    colour = op_colour("MyOp")
    assert colour not in OP_COLOURS.values()
    assert source.count(colour) >= 2  # the block cell and the legend swatch
    assert op_colour("MyOp") == colour  # stable


@needs_dot
@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_png_and_pdf(tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = write(render([graph(CONCRETE)]), tmp_path / f"fig{suffix}")
    assert out.read_bytes().startswith(magic)


def test_dot_output_needs_no_graphviz_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = write(render([graph(CONCRETE)]), tmp_path / "fig.dot")
    assert out.read_text().startswith("digraph")
    with pytest.raises(MmnasError, match="apt-get install graphviz") as err:
        write(render([graph(CONCRETE)]), tmp_path / "fig.svg")
    assert "brew install graphviz" in str(err.value)


def test_unknown_suffix_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.svg"):
        write(render([graph(CONCRETE)]), tmp_path / "fig.jpeg")


# ------------------------------------------------------------------------------ CLI


def app() -> typer.Typer:
    a = typer.Typer()
    a.callback()(lambda: None)
    render_commands.register(a)
    return a


def fake_run(tmp_path: Path, spec_path: Path) -> Path:
    """A run directory whose history.json searched SPACE (two epochs)."""
    spec = parse(SPACE, str(spec_path))
    blocks = [
        {"stack": b.stack, "index": b.index, "choices": list(b.choices)} for b in spec.blocks()
    ]
    theta = [[0.25, 0.75], [0.6, 0.4]] + [[0.05, 0.7, 0.15, 0.1]] * 3
    uniform = [[1 / len(b["choices"])] * len(b["choices"]) for b in blocks]
    epochs = [
        {
            "epoch": i + 1,
            "phase": p,
            "theta": t,
            "loss_w": 1.0,
            "loss_theta": None,
            "metric": 10.0,
            "metric_name": "accuracy",
            "arch": {},
            "seconds": 1.0,
        }
        for i, (p, t) in enumerate([("warmup", uniform), ("search", theta)])
    ]
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(
        json.dumps({"spec": str(spec_path), "blocks": blocks, "epochs": epochs})
    )
    return run


def test_cli_render_with_theta(tmp_path: Path) -> None:
    spec_path = tmp_path / "space.mmnas"
    spec_path.write_text(SPACE)
    run = fake_run(tmp_path, spec_path)
    out = tmp_path / "theta.dot"
    result = CliRunner().invoke(
        app(), ["render", str(spec_path), "-o", str(out), "--theta", str(run)]
    )
    assert result.exit_code == 0, result.output
    source = out.read_text()
    assert "0.75" in source and "0.70" in source
    # without SPEC, the spec named in history.json is drawn
    result = CliRunner().invoke(app(), ["render", "-o", str(out), "--theta", str(run)])
    assert result.exit_code == 0, result.output


def test_theta_of_a_concrete_spec_from_the_same_search(tmp_path: Path) -> None:
    """arch.mmnas of a run, rendered with --theta: each kept op shows its probability."""
    spec_path = tmp_path / "space.mmnas"
    run = fake_run(tmp_path, spec_path)
    history = json.loads((run / "history.json").read_text())
    arch = (
        HEADER.format(name="arch")
        + """
encoder text = FFN SA
decoder image(guide = text) = RSA RSA RSA
head vqa(answers = 6)
"""
    )
    assert theta_for(graph(arch), history) == [[0.75], [0.6], [0.7], [0.7], [0.7]]


def test_cli_render_theta_of_another_search_fails_clearly(tmp_path: Path) -> None:
    spec_path = tmp_path / "space.mmnas"
    spec_path.write_text(SPACE)
    run = fake_run(tmp_path, spec_path)
    other = tmp_path / "other.mmnas"
    other.write_text(CONCRETE)
    result = CliRunner().invoke(
        app(), ["render", str(other), "-o", str(tmp_path / "x.dot"), "--theta", str(run)]
    )
    assert isinstance(result.exception, MmnasError)
    assert "history.json" in str(result.exception)
