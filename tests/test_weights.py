"""`mmnasdsl convert --weights`: the reference implementation's checkpoints in and out.

The reference's code is not importable here, so its layout is written out by hand: the
names below are the ones its `Net_Full` saves (mmnas/model/full_vqa.py, modules.py; the
listing of docs/reference.md), and a fake checkpoint in that layout holds random tensors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import mmnasdsl
from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.reference import WeightsError, reference_names
from mmnasdsl.data import open_split
from mmnasdsl.lang.spec import Spec
from mmnasdsl.train.loop import evaluate, model_sizes
from tests._runkit import cli, make_data

SPEC = """model m {{ d_model = 64  head_dim = 64  ffn = 2x }}
input text = words(max_len = 16, embed = learned(8), lstm)
input image = objects(max = 12, dim = 64, relations = box4)
encoder text = SA FFN
decoder image(guide = text) = RSA GA FFN
head {head}
data shapes(scenes = 10, seed = 0)
"""
HEADS = {"vqa": "vqa(loss = bce)", "itm": "itm(candidates = 6, top_k = 2)", "vg": "vg"}

ENC, DEC = "backnone.cells_enc.0.dag", "backnone.cells_dec.0.dag"
ATT = {"q": "linear_q", "k": "linear_k", "v": "linear_v", "o": "linear_merge"}


def attention(block: int, ref: str) -> dict[str, str]:
    """The four projections of an attention op: ours `att.<x>`, the reference's `mhatt.*`."""
    return {f"blocks.{block}.att.{a}.weight": f"{ref}.mhatt.{r}.weight" for a, r in ATT.items()}


# our key -> the reference's, for SPEC, written out by hand from the reference's modules
BODY = {
    "stems.text.embed.weight": "embedding.weight",
    **{f"stems.text.lstm.{p}": f"lstm.{p}" for p in ("weight_ih_l0", "weight_hh_l0")},
    **{f"stems.text.lstm.{p}": f"lstm.{p}" for p in ("bias_ih_l0", "bias_hh_l0")},
    "stems.image.proj.weight": "imgfeat_linear.weight",
    "stems.image.proj.bias": "imgfeat_linear.bias",
    "relation.fc.weight": "linear_y_rel.weight",
    "relation.fc.bias": "linear_y_rel.bias",
    **attention(0, f"{ENC}.0.0"),
    "blocks.0.norm.weight": f"{ENC}.0.0.ln.a_2",
    "blocks.0.norm.bias": f"{ENC}.0.0.ln.b_2",
    "blocks.1.fc1.weight": f"{ENC}.1.0.mlp.fc.linear.weight",
    "blocks.1.fc1.bias": f"{ENC}.1.0.mlp.fc.linear.bias",
    "blocks.1.fc2.weight": f"{ENC}.1.0.mlp.linear.weight",
    "blocks.1.fc2.bias": f"{ENC}.1.0.mlp.linear.bias",
    "blocks.1.norm.weight": f"{ENC}.1.0.ln.a_2",
    "blocks.1.norm.bias": f"{ENC}.1.0.ln.b_2",
    **attention(2, f"{DEC}.0.0"),
    "blocks.2.rel.weight": f"{DEC}.0.0.mhatt.linear_r.weight",
    "blocks.2.rel.bias": f"{DEC}.0.0.mhatt.linear_r.bias",
    "blocks.2.norm.weight": f"{DEC}.0.0.ln.a_2",
    "blocks.2.norm.bias": f"{DEC}.0.0.ln.b_2",
    **attention(3, f"{DEC}.1.0"),
    "blocks.3.norm.weight": f"{DEC}.1.0.ln.a_2",
    "blocks.3.norm.bias": f"{DEC}.1.0.ln.b_2",
    "blocks.4.fc1.weight": f"{DEC}.2.0.mlp.fc.linear.weight",
    "blocks.4.fc1.bias": f"{DEC}.2.0.mlp.fc.linear.bias",
    "blocks.4.fc2.weight": f"{DEC}.2.0.mlp.linear.weight",
    "blocks.4.fc2.bias": f"{DEC}.2.0.mlp.linear.bias",
    "blocks.4.norm.weight": f"{DEC}.2.0.ln.a_2",
    "blocks.4.norm.bias": f"{DEC}.2.0.ln.b_2",
}
ATTFLAT = {"mlp.0": "mlp.fc.linear", "mlp.3": "mlp.linear", "proj": "linear_merge"}


def attflat(ours: str, ref: str) -> dict[str, str]:
    return {
        f"{ours}.{a}.{p}": f"{ref}.{b}.{p}" for a, b in ATTFLAT.items() for p in ("weight", "bias")
    }


def pair(ours: str, ref: str) -> dict[str, str]:
    return {f"{ours}.weight": f"{ref}.weight", f"{ours}.bias": f"{ref}.bias"}


FUSION = {
    **attflat("head.fusion.flat_x", "attflat_x"),
    **attflat("head.fusion.flat_y", "attflat_y"),
    "head.fusion.norm.weight": "proj_norm.a_2",
    "head.fusion.norm.bias": "proj_norm.b_2",
}
HAND = {
    "vqa": {**BODY, **FUSION, **pair("head.classify", "proj")},
    "itm": {**BODY, **FUSION, **pair("head.score", "proj")},
    "vg": {
        **BODY,
        **attflat("head.flat_x", "attflat_x"),
        **pair("head.proj_y", "attfc_y"),
        "head.norm.weight": "proj_norm.a_2",
        "head.norm.bias": "proj_norm.b_2",
        **pair("head.score", "proj_scores"),
        **pair("head.delta", "proj_reg"),
    },
}


def spec_of(task: str, **replace: str) -> Spec:
    text = SPEC.format(head=HEADS[task])
    for old, new in replace.items():
        text = text.replace(old, new)
    return mmnasdsl.loads(text, "ref.mmnas")


def net_of(spec: Spec, vocab: int = 30, answers: int = 9) -> torch.nn.Module:
    return build_model(spec, vocab_size=vocab, num_answers=answers if spec.task == "vqa" else None)


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_reference_names_by_hand(task: str) -> None:
    spec = spec_of(task)
    assert reference_names(net_of(spec), spec) == HAND[task]


def fake_reference(net: torch.nn.Module, task: str, prefix: str = "module.") -> dict:
    """A checkpoint as the reference's train script saves it: random tensors under its
    names (shapes of our network, which are the reference's), optimiser state, epoch."""
    g = torch.Generator().manual_seed(0)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    state = {
        prefix + ref: torch.randn(shapes[ours], generator=g) for ours, ref in HAND[task].items()
    }
    return {"state_dict": state, "net_optim": {"state": {}, "param_groups": []}, "epoch": 13}


def hand_load(net: torch.nn.Module, ckpt: dict, task: str) -> torch.nn.Module:
    """`net` with the fake checkpoint's tensors placed by the hand-written names."""
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    net.load_state_dict({ours: state[ref] for ours, ref in HAND[task].items()})
    return net.eval()


def write(tmp_path: Path, task: str, **replace: str) -> tuple[Path, Spec]:
    path = tmp_path / "ref.mmnas"
    spec = spec_of(task, **replace)
    path.write_text(SPEC.format(head=HEADS[task]), encoding="utf-8")
    for old, new in replace.items():
        path.write_text(path.read_text().replace(old, new), encoding="utf-8")
    return path, spec


@pytest.mark.parametrize(("task", "prefix"), [("vqa", "module."), ("vg", "")])
def test_convert_then_load(task: str, prefix: str, tmp_path: Path) -> None:
    """Every tensor lands where the hand-written names say, DDP prefix or not, and the
    converted checkpoint's network computes what the hand-loaded one does."""
    _, spec = write(tmp_path, task)
    ref = fake_reference(net_of(spec), task, prefix)
    torch.save(ref, tmp_path / "ref.pkl")
    cli("convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt", cwd=tmp_path)
    ckpt = torch.load(tmp_path / "out.pt", weights_only=True)
    assert ckpt["sizes"] == {"vocab_size": 30, "num_answers": 9 if task == "vqa" else 0}
    assert ckpt["epoch"] == 13
    want = hand_load(net_of(spec), ref, task)
    for key, value in want.state_dict().items():
        assert torch.equal(ckpt["model"][key], value), key
    got = net_of(spec)
    got.load_state_dict(ckpt["model"])
    batch = tiny_batch()
    with torch.no_grad():
        a, b = want(batch), got.eval()(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


def tiny_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(2, 5, 2, generator=g) * 40
    return {
        "words": torch.randint(1, 30, (2, 7), generator=g),
        "objects": torch.randn(2, 5, 64, generator=g),
        "boxes": torch.cat([xy, xy + 5 + torch.rand(2, 5, 2, generator=g) * 20], -1),
        "image_size": torch.full((2, 2), 80.0),
    }


def test_round_trip_to_reference(tmp_path: Path) -> None:
    """reference -> mmnasdsl -> reference gives back every tensor under its name."""
    _, spec = write(tmp_path, "vqa")
    ref = fake_reference(net_of(spec), "vqa")
    torch.save(ref, tmp_path / "ref.pkl")
    cli("convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt", cwd=tmp_path)
    cli(
        "convert",
        "--weights",
        "out.pt",
        "ref.mmnas",
        "--to",
        "reference",
        "-o",
        "back.pkl",
        cwd=tmp_path,
    )
    back = torch.load(tmp_path / "back.pkl", weights_only=True)
    assert back["epoch"] == 13
    assert set(back["state_dict"]) == set(ref["state_dict"])
    assert all(torch.equal(v, ref["state_dict"][k]) for k, v in back["state_dict"].items())


def test_to_reference_without_rsa_writes_the_unused_relation_layer(tmp_path: Path) -> None:
    """The reference builds linear_y_rel in every network and loads strictly."""
    _, spec = write(tmp_path, "vqa", **{"RSA GA FFN": "SA GA FFN"})
    net = net_of(spec)
    from mmnasdsl.compile.reference import to_reference

    out = to_reference(net.state_dict(), net, spec)
    assert out["module.linear_y_rel.weight"].shape == (64, 4)
    assert not any("linear_r" in k for k in out)


def failing(tmp_path: Path, *args: str) -> str:
    proc = cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_garbage_file(tmp_path: Path) -> None:
    write(tmp_path, "vqa")
    (tmp_path / "ref.pkl").write_bytes(b"not a pickle at all")
    err = failing(tmp_path, "convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt")
    assert "ref.pkl: not a torch checkpoint" in err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-o", "out.pt", "--to", "pytorch"], "--to pytorch: expected one of mmnasdsl, reference"),
        ([], "give -o OUT"),
        (["-o", "out.pt", "--epoch", "2"], "--space and --epoch are for architecture files"),
    ],
)
def test_bad_flags(flags: list[str], message: str, tmp_path: Path) -> None:
    _, spec = write(tmp_path, "vqa")
    torch.save(fake_reference(net_of(spec), "vqa"), tmp_path / "ref.pkl")
    assert message in failing(tmp_path, "convert", "--weights", "ref.pkl", "ref.mmnas", *flags)


def test_not_a_state_dict(tmp_path: Path) -> None:
    write(tmp_path, "vqa")
    torch.save({"state_dict": [1, 2]}, tmp_path / "ref.pkl")
    err = failing(tmp_path, "convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt")
    assert "maps tensor names to tensors" in err


def test_missing_wrong_shape_and_left_over(tmp_path: Path) -> None:
    """One message names every problem, with the spec line of our tensor."""
    _, spec = write(tmp_path, "vqa")
    ref = fake_reference(net_of(spec), "vqa")
    state = ref["state_dict"]
    del state[f"module.{DEC}.1.0.mhatt.linear_q.weight"]
    state[f"module.{ENC}.1.0.mlp.linear.bias"] = torch.zeros(65)
    state["module.bboxfeat_linear.weight"] = torch.zeros(64, 5)
    torch.save(ref, tmp_path / "ref.pkl")
    err = failing(tmp_path, "convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt")
    assert f"missing {DEC}.1.0.mhatt.linear_q.weight (for blocks.3.att.q.weight, ref.mmnas:5" in err
    assert f"{ENC}.1.0.mlp.linear.bias is 65, but blocks.1.fc2.bias (ref.mmnas:4" in err
    assert "left over: bboxfeat_linear.weight 64x5" in err
    assert not (tmp_path / "out.pt").exists()


def test_search_net_checkpoint_is_named(tmp_path: Path) -> None:
    """A supernet checkpoint of the reference's search scripts says what it is."""
    _, spec = write(tmp_path, "vqa")
    ref = fake_reference(net_of(spec), "vqa")
    state = ref["state_dict"]
    for key in [k for k in state if ".dag." in k]:
        state[re.sub(r"(\.dag\.\d+\.0\.)", r"\1candidate_ops.0.", key)] = state.pop(key)
    torch.save(ref, tmp_path / "ref.pkl")
    err = failing(tmp_path, "convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt")
    assert "search network's checkpoint" in err and "Net_Full" in err


def test_heads_must_be_64_wide(tmp_path: Path) -> None:
    """4 heads of 16 have the reference's shapes but not its function: refused."""
    net_spec = spec_of("vqa")
    torch.save(fake_reference(net_of(net_spec), "vqa"), tmp_path / "ref.pkl")
    write(tmp_path, "vqa", **{"head_dim = 64": "heads = 4"})
    err = failing(tmp_path, "convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt")
    assert "4 heads of 16" in err and "head_dim = 64" in err


def test_search_space_refused() -> None:
    spec = spec_of("vqa", **{"encoder text = SA FFN": "encoder text = (SA | FFN) * 2"})
    with pytest.raises(WeightsError, match="search space"):
        reference_names(build_model(spec, vocab_size=30, num_answers=9), spec)


def test_eval_of_a_converted_checkpoint(tmp_path: Path) -> None:
    """`mmnasdsl eval` reads the converted checkpoint and scores as the hand-loaded net."""
    data = make_data(tmp_path / "data", "vqa")
    _, spec = write(tmp_path, "vqa")
    sizes = model_sizes(open_split(data, "train", spec))
    net = net_of(spec, sizes["vocab_size"], sizes["num_answers"])
    ref = fake_reference(net, "vqa")
    torch.save(ref, tmp_path / "ref.pkl")
    cli("convert", "--weights", "ref.pkl", "ref.mmnas", "-o", "out.pt", cwd=tmp_path)
    cli("eval", "ref.mmnas", "out.pt", "--data", "data", "--threads", "1", cwd=tmp_path)
    got = json.loads((tmp_path / "eval-test.json").read_text())
    dataset = open_split(data, "test", spec)
    want, _ = evaluate(
        hand_load(net, ref, "vqa"), dataset, device=torch.device("cpu"), relations="pixel"
    )
    assert got == json.loads(json.dumps(want))


def test_rows_in_the_store_order(tmp_path: Path) -> None:
    """--rows: each of our tokens gets the reference's row of the same word (UNK's when it
    has none), each answer its classifier row (never predicted when it has none)."""
    data = make_data(tmp_path / "data", "vqa")
    _, spec = write(tmp_path, "vqa")
    train = open_split(data, "train", spec)
    vocab, answers = list(train.vocab), list(train.answers)
    rng = torch.Generator().manual_seed(3)
    words = [vocab[i] for i in torch.randperm(len(vocab), generator=rng).tolist()]
    words = [w for w in words if w not in ("<pad>", "<unk>", vocab[5])] + ["zebra"]
    token_to_ix = {w: i for i, w in enumerate(["PAD", "UNK", "CLS", *words])}
    kept = [a for a in answers if a != answers[2]] + ["seven"]
    ans_to_ix = {a: i for i, a in enumerate(reversed(kept))}
    (tmp_path / "lists.json").write_text(
        json.dumps({"token_to_ix": token_to_ix, "ans_to_ix": ans_to_ix})
    )
    ref = fake_reference(net_of(spec, len(token_to_ix), len(ans_to_ix)), "vqa")
    torch.save(ref, tmp_path / "ref.pkl")
    args = ("--rows", "lists.json", "--data", "data", "-o", "out.pt")
    proc = cli("convert", "--weights", "ref.pkl", "ref.mmnas", *args, cwd=tmp_path)
    assert "1 of" in proc.stderr and "answers are not in the reference's list" in proc.stderr
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got["sizes"] == {"vocab_size": len(vocab), "num_answers": len(answers)}
    embed, state = got["model"]["stems.text.embed.weight"], ref["state_dict"]
    names = {"<pad>": "PAD", "<unk>": "UNK", vocab[5]: "UNK"}
    for i, word in enumerate(vocab):
        row = token_to_ix[names.get(word, word)]
        assert torch.equal(embed[i], state["module.embedding.weight"][row]), word
    for j, answer in enumerate(answers):
        weight, bias = (
            got["model"]["head.classify.weight"][j],
            got["model"]["head.classify.bias"][j],
        )
        if answer == answers[2]:
            assert not weight.any() and bias == -1e4
        else:
            assert torch.equal(weight, state["module.proj.weight"][ans_to_ix[answer]])
            assert bias == state["module.proj.bias"][ans_to_ix[answer]]


def test_rows_file_must_hold_the_lists(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", "vqa")
    _, spec = write(tmp_path, "vqa")
    torch.save(fake_reference(net_of(spec), "vqa"), tmp_path / "ref.pkl")
    (tmp_path / "lists.json").write_text(json.dumps({"token_to_ix": ["a", "b"]}))
    args = ("--rows", "lists.json", "--data", str(data), "-o", "out.pt")
    err = failing(tmp_path, "convert", "--weights", "ref.pkl", "ref.mmnas", *args)
    assert 'lists.json: expected {"token_to_ix"' in err


def test_other_space_kind_refused(tmp_path: Path) -> None:
    _, spec = write(tmp_path, "vqa")
    torch.save(fake_reference(net_of(spec), "vqa"), tmp_path / "ref.pkl")
    bmnas = str(Path(__file__).resolve().parents[1] / "specs" / "bmnas-xor.mmnas")
    err = failing(tmp_path, "convert", "--weights", "ref.pkl", bmnas, "-o", "out.pt")
    assert "the reference's weights are for `space mmnas` specs" in err
