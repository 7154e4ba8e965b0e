"""graph.py: nodes and edges as docs/interfaces.md says, cycles, sizes, params and FLOPs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mmnasdsl
from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.graph import build_graph
from mmnasdsl.lang.errors import SpecError
from mmnasdsl.lang.parse import parse

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
model m { d_model = 32 heads = 4 }
input text = words(max_len = 8, embed = learned(16), lstm)
input image = objects(max = 10, dim = 12, relations = box4)
pool dec = SA | RSA | GA | FFN
encoder text = (SA | FFN) * 2
decoder image(guide = text) = dec GA FFN
head vqa(answers = 6)
"""


def test_nodes_and_edges() -> None:
    gr = build_graph(parse(SMALL, "s"), vocab_size=30)
    g = gr.g
    kinds = {n: a["kind"] for n, a in g.nodes(data=True)}
    assert kinds == {
        "input:text": "input",
        "input:image": "input",
        "stem:text": "stem",
        "stem:image": "stem",
        "block:encoder:0": "block",
        "block:encoder:1": "block",
        "block:decoder:0": "block",
        "block:decoder:1": "block",
        "block:decoder:2": "block",
        "relations": "relations",
        "head": "head",
    }
    assert g.nodes["input:text"]["input_kind"] == "words"
    assert g.nodes["stem:text"]["label"] == "LSTM" and g.nodes["stem:image"]["label"] == "Linear"
    d0 = g.nodes["block:decoder:0"]
    assert d0["choices"] == ("SA", "RSA", "GA", "FFN") and d0["guide"] == "text"
    assert set(d0["params"]) == {"SA", "RSA", "GA", "FFN"} and d0["stream"] == "image"
    assert g.nodes["head"]["label"] == "vqa" and g.nodes["head"]["params"] > 0
    edges = {(u, v): a["kind"] for u, v, a in g.edges(data=True)}
    assert edges[("stem:text", "block:encoder:0")] == "flow"
    assert edges[("block:decoder:2", "head")] == "flow"
    assert edges[("block:encoder:1", "head")] == "flow"
    guides = {v for (u, v), k in edges.items() if k == "guide"}
    assert guides == {"block:decoder:0", "block:decoder:1"}  # blocks with a GA choice
    assert all(u == "block:encoder:1" for (u, _), k in edges.items() if k == "guide")
    assert {v for (u, v), k in edges.items() if k == "relations"} == {"block:decoder:0"}
    assert gr.search_space_size == 2 * 2 * 4


def test_no_relations_node_without_rsa() -> None:
    gr = build_graph(parse(SMALL.replace("dec GA", "GA GA"), "s"))
    assert "relations" not in gr.g


def test_guide_cycle_is_a_spec_error() -> None:
    """The checker is the one home of the rule; the graph and the build trust a checked spec."""
    text = SMALL.replace("encoder text = (SA | FFN) * 2", "decoder text(guide = image) = GA")
    text = text.replace("decoder image", "encoder image")
    with pytest.raises(SpecError, match="cycle"):
        mmnasdsl.loads(text, "cyc")


def test_params_match_the_built_modules() -> None:
    spec = parse(SMALL, "s")
    gr = build_graph(spec, vocab_size=30)
    supernet = build_model(spec, vocab_size=30)
    assert gr.params()["total"] == sum(p.numel() for p in supernet.parameters())
    arch = [1, 0, 1, 0, 0]  # FFN SA | RSA GA FFN
    concrete = spec.replace_stacks(supernet.arch_names(arch))
    net = build_model(concrete, vocab_size=30)
    p = gr.params(arch)
    assert p["total"] == sum(q.numel() for q in net.parameters())
    assert p["head"] == sum(q.numel() for q in net.head.parameters())
    assert p["encoder"] == sum(q.numel() for b in net.blocks[:2] for q in b.parameters())
    assert p["total"] == p["embedding"] + p["encoder"] + p["decoder"] + p["head"]
    assert gr.largest_arch()[:2] == [1, 1]  # FFN has 2x the parameters of SA


def test_flops_close_to_torch_counter() -> None:
    """Analytic FLOPs vs torch's counter on a fixed net (LSTM-free: the counter skips it)."""
    spec = parse(SMALL.replace(", lstm)", ", lstm = false)"), "s")
    arch = [0, 1, 1, 0, 0]
    concrete = spec.replace_stacks(build_model(spec, vocab_size=30).arch_names(arch))
    net = build_model(concrete, vocab_size=30).eval()
    batch = {
        "words": torch.randint(1, 30, (1, 8)),
        "objects": torch.randn(1, 10, 12),
        "boxes": torch.tensor([[0.0, 0, 5, 5]]).repeat(1, 10, 1),
    }
    with FlopCounterMode(display=False) as counter:
        net(batch)
    analytic = build_graph(spec, vocab_size=30).flops(arch, words=8, objects=10)
    assert abs(analytic - counter.get_total_flops()) / analytic < 0.05


def test_paper_search_space() -> None:
    path = ROOT / "specs" / "vqa.mmnas"
    if not path.exists():
        pytest.skip("specs/vqa.mmnas not shipped yet")
    gr = build_graph(mmnasdsl.load(path))
    assert gr.search_space_size == 2**12 * 4**18
    assert 60e6 < gr.params(gr.largest_arch())["total"] < 90e6  # paper: up to 76M


VARIANTS = [
    {},
    {"bias": True, "norm": "reference"},
    {"d_model": 48, "heads": 3, "ffn": 2.5, "fused": 40, "relation_dim": 7},
]


@pytest.mark.parametrize("options", VARIANTS, ids=["default", "bias-refnorm", "odd-sizes"])
def test_every_param_formula_counts_the_built_modules(options: dict) -> None:
    """`info` counts from formulas (no torch); each agrees with the module it describes."""
    from mmnasdsl.compile.graph import head_params, op_params, relation_params, stem_params
    from mmnasdsl.compile.network import RelationEmbedding, make_stem
    from mmnasdsl.heads import build_head, get_head, list_heads
    from mmnasdsl.lang.settings import ModelSettings, ObjectsInput, WordsInput
    from mmnasdsl.ops import build_op, list_ops

    s = ModelSettings(**{"d_model": 32, "heads": 4, **options})

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    for op in list_ops():
        assert op_params(op, s) == count(build_op(op, s)), op
    for name in list_heads():
        if "taps" in get_head(name).requires:
            continue  # a head of BM-NAS cells: tests/test_bmnas_model.py
        task = get_head(name)({}, num_answers=11)
        assert head_params(task, s) == count(build_head(task, s)), name
    for cfg in (WordsInput(), WordsInput(lstm=False, embed=12), ObjectsInput(dim=20)):
        assert stem_params(cfg, s.d_model, 50) == count(make_stem(cfg, s.d_model, 50)), cfg
    assert relation_params(s.relation_dim) == count(RelationEmbedding(s.relation_dim))


def test_info_needs_no_torch_and_no_memory_at_any_size(tmp_path: Path) -> None:
    """The largest sizes the options admit (d = 8192, FFN 64x, 64k-wide features, a
    4096-wide relation MLP): 277G parameters, counted by formula in a small process.
    Memory is the process's own high-water mark (VmHWM), which starts afresh at exec,
    unlike ru_maxrss, which also counts the pages of the forked test process."""
    import subprocess
    import sys

    text = (
        (ROOT / "specs" / "vqa.mmnas")
        .read_text()
        .replace("d_model = 512", "d_model = 8192  relation_dim = 4096")
        .replace("ffn = 4x", "ffn = 64x")
        .replace("dim = 2048", "dim = 65536")
    )
    (tmp_path / "big.mmnas").write_text(text)
    # VmHWM, not ru_maxrss: Linux keeps a forked parent's ru_maxrss across exec
    code = (
        "import sys, mmnasdsl; from mmnasdsl.compile.graph import build_graph; "
        f"g = build_graph(mmnasdsl.load({str(tmp_path / 'big.mmnas')!r})); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print(g.params()['total'], 'torch' in sys.modules, int(hwm.split()[1]) // 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    total, torch_loaded, rss_mb = out.stdout.split()
    assert int(total) > 2.7e11 and torch_loaded == "False" and int(rss_mb) < 500, out
