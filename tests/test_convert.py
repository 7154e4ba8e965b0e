"""Interchange with the reference implementation's architecture JSON."""

from __future__ import annotations

import json

import pytest
from _specs import ROOT

import mmnasdsl
from mmnasdsl.lang.convert import ConvertError, arch_to_spec, read_arch_json, spec_to_arch
from mmnasdsl.lang.errors import MmnasError
from mmnasdsl.lang.format import format_spec

ARCH = ROOT / "tests" / "data" / "arch-vqa-reference.json"
OPS = list(mmnasdsl.catalog().ops)


def _ops(spec, kind):
    return [b.choices[0] for b in spec.blocks() if b.stack == kind]


def test_reference_file_becomes_the_searched_vqa_net():
    data = read_arch_json(ARCH.read_text(), str(ARCH))
    spec = arch_to_spec(data, mmnasdsl.load(ROOT / "specs" / "vqa.mmnas"), OPS)
    net = mmnasdsl.load(ROOT / "specs" / "mmnasnet-vqa.mmnas")
    assert spec.is_concrete
    for kind in ("encoder", "decoder"):
        assert _ops(spec, kind) == _ops(net, kind)
    mmnasdsl.loads(format_spec(spec))  # and it is a valid spec


def test_spec_to_reference_json_and_back():
    net = mmnasdsl.load(ROOT / "specs" / "mmnasnet-vqa.mmnas")
    arch = spec_to_arch(net)
    assert arch == json.loads(ARCH.read_text())  # the reference's own op names
    back = arch_to_spec(arch, mmnasdsl.load(ROOT / "specs" / "vqa.mmnas"), OPS)
    assert _ops(back, "decoder") == _ops(net, "decoder")


def test_names_are_case_insensitive_and_epoch_defaults_to_last():
    data = {
        "epoch0": {"enc": [["sa"]], "dec": [["GA"]]},
        "epoch7": {"enc": [["Ffn"]], "dec": [["rsa"]]},
    }
    space = mmnasdsl.load(ROOT / "specs" / "shapes-vqa.mmnas")
    spec = arch_to_spec(data, space, OPS)
    assert (_ops(spec, "encoder"), _ops(spec, "decoder")) == (["FFN"], ["RSA"])
    spec = arch_to_spec(data, space, OPS, epoch=0)
    assert (_ops(spec, "encoder"), _ops(spec, "decoder")) == (["SA"], ["GA"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epoch0": {"enc": [["SA", "GA"]], "dec": []}}, "has 2 ops"),
        ({"epoch0": {"enc": [["XA"]], "dec": []}}, "unknown op 'XA'"),
        ({"epoch0": {"enc": "SA", "dec": []}}, "expected a list of blocks"),
        ({"epoch0": {"enc": [[]], "dec": []}}, "expected a list with one op name"),
        ({"epoch0": {"encoder": []}}, "unknown keys ['encoder']"),
        ({"best": {}}, "expected keys like 'epoch0'"),
        ({"epoch0": []}, "should be an object"),
    ],
)
def test_bad_architectures_are_clear_errors(data, message):
    space = mmnasdsl.load(ROOT / "specs" / "shapes-vqa.mmnas")
    with pytest.raises(ConvertError, match=None) as info:
        arch_to_spec(data, space, OPS, source="a.json")
    assert message in str(info.value) and isinstance(info.value, MmnasError)


def test_missing_epoch_names_the_ones_present():
    with pytest.raises(ConvertError, match=r"no epoch 3 \(the file has epochs 0, 2\)"):
        arch_to_spec(
            {"epoch0": {}, "epoch2": {}},
            mmnasdsl.load(ROOT / "specs" / "shapes-vqa.mmnas"),
            OPS,
            epoch=3,
        )


def test_bad_json_is_located():
    with pytest.raises(ConvertError, match=r"a.json:1:12: not valid JSON: Expecting value"):
        read_arch_json('{"epoch0": }', "a.json")


def test_search_space_does_not_convert_to_json():
    with pytest.raises(ConvertError, match="only a concrete spec converts"):
        spec_to_arch(mmnasdsl.load(ROOT / "specs" / "vqa.mmnas"))
