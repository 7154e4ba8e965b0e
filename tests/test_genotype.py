"""The official BM-NAS Genotype <-> concrete specs: the repo's own examples (notes §8), the
round trip, the pickle, and the errors."""

from __future__ import annotations

import pickle
import sys
import types
from collections import namedtuple

import pytest
from _specs import ROOT
from typer.testing import CliRunner

import mmnasdsl
from mmnasdsl.cli import app
from mmnasdsl.lang.convert import ConvertError
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.genotype import (
    format_genotype,
    genotype_to_spec,
    read_genotype,
    read_genotype_pickle,
    spec_to_genotype,
)

# notes §8, examples 1-3 (NTU with the current op names; MM-IMDB and Ego with the old ones)
NTU = (
    "Genotype(edges=[('skip', 2), ('skip', 7), ('skip', 2), ('skip', 3)], steps=[StepGenotype("
    "inner_edges=[('skip', 0), ('skip', 1), ('skip', 2), ('skip', 0)], inner_steps=['LinearGLU', "
    "'LinearGLU'], inner_concat=[2, 3]), StepGenotype(inner_edges=[('skip', 0), ('skip', 1), "
    "('skip', 2), ('skip', 0)], inner_steps=['ScaleDotAttn', 'ScaleDotAttn'], inner_concat=[2, "
    "3])], concat=[8, 9])"
)
MMIMDB = (
    "Genotype(edges=[('skip', 2), ('skip', 4), ('skip', 4), ('skip', 6)], steps=[StepGenotype("
    "inner_edges=[('skip', 1), ('skip', 0)], inner_steps=['cat_conv_relu'], inner_concat=[2]), "
    "StepGenotype(inner_edges=[('skip', 1), ('skip', 0)], inner_steps=['cat_conv_glu'], "
    "inner_concat=[2])], concat=[6, 7])"
)
EGO = (
    "Genotype(edges=[('skip', 1), ('skip', 5), ('skip', 4), ('skip', 5)], steps=[StepGenotype("
    "inner_edges=[('skip', 0), ('skip', 1), ('skip', 1), ('skip', 0), ('skip', 3), ('skip', 2)],"
    " inner_steps=['sum', 'sum', 'sum'], inner_concat=[2, 3, 4]), StepGenotype(inner_edges=[("
    "'skip', 0), ('skip', 1), ('skip', 1), ('skip', 0), ('skip', 2), ('skip', 3)], inner_steps="
    "['sum', 'sum', 'sum'], inner_concat=[2, 3, 4])], concat=[8, 9])"
)


def space(name: str):
    return mmnasdsl.load(ROOT / "specs" / f"bmnas-{name}.mmnas")


def test_the_official_ntu_example_reads_as_the_notes_say():
    spec = genotype_to_spec(read_genotype(NTU), space("ntu"))
    c1, c2 = spec.cells()
    assert c1.inputs == ("layer4", "fc7") and c2.inputs == ("layer4", "pooled")
    assert [(s.ops[0], s.inputs) for s in c1.steps] == [
        ("LinearGLU", ("x", "y")),
        ("LinearGLU", ("s1", "x")),
    ]
    assert format_genotype(spec_to_genotype(spec)) == NTU


def test_old_names_and_a_cell_reading_a_cell():
    spec = genotype_to_spec(read_genotype(MMIMDB), space("mmimdb"))
    c1, c2 = spec.cells()
    assert c1.inputs == ("conv5_3", "o1") and c2.inputs == ("o1", "c1")
    assert c1.steps[0].ops == ("ConcatFC",) and c1.steps[0].inputs == ("y", "x")
    assert c2.steps[0].ops == ("LinearGLU",)
    ego = genotype_to_spec(read_genotype(EGO), space("ego"))
    assert ego.cells()[0].inputs == ("rgb3", "depth3")
    assert [s.inputs for s in ego.cells()[0].steps] == [("x", "y"), ("y", "x"), ("s2", "s1")]


def test_the_round_trip_through_text_keeps_the_spec():
    spec = genotype_to_spec(read_genotype(EGO), space("ego"))
    again = mmnasdsl.loads(format_spec(spec))
    assert again == spec and again.is_concrete
    assert genotype_to_spec(spec_to_genotype(again), space("ego")) == spec


def test_a_log_line_and_its_last_genotype():
    log = f"12:00 INFO epoch 1 {MMIMDB}\n12:05 INFO epoch 2 {MMIMDB.replace('4), (', '3), (', 1)}\n"
    g = read_genotype(log, "log.txt")
    assert g.edges[1] == ("skip", 3)


def test_the_pickle_loads_only_the_two_namedtuples(tmp_path):
    module = types.ModuleType("models.search.darts.genotypes")
    module.Genotype = namedtuple("Genotype", "edges steps concat")
    module.StepGenotype = namedtuple("StepGenotype", "inner_edges inner_steps inner_concat")
    module.Genotype.__module__ = module.StepGenotype.__module__ = module.__name__
    parents = ["models", "models.search", "models.search.darts"]
    for name in parents:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[module.__name__] = module
    try:
        g = read_genotype(NTU)
        official = module.Genotype(g.edges, [module.StepGenotype(*s) for s in g.steps], g.concat)
        data = pickle.dumps(official)
    finally:
        for name in [*parents, module.__name__]:
            del sys.modules[name]
    assert format_genotype(read_genotype_pickle(data)) == NTU
    with pytest.raises(ConvertError, match="refusing"):
        read_genotype_pickle(pickle.dumps(tmp_path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nothing here", "no Genotype"),
        ("Genotype(edges=[('skip', 2)", "not closed"),
        (NTU.replace("('skip', 7)", "('none', 7)"), "a derived edge is 'skip'"),
        (NTU.replace("('skip', 7)", "('skip', 9)"), "state 9 is not before the cell"),
        (NTU.replace("'LinearGLU', 'LinearGLU'", "'LinearGLU', 'Conv'"), "unknown op 'Conv'"),
        (NTU.replace("concat=[8, 9]", "concat=[7, 9]"), "are not the last cell outputs"),
        (NTU.replace("inner_concat=[2, 3]", "inner_concat=[3]", 1), "concatenates 1 steps"),
        (NTU.replace("Genotype(edges", "Genotype(__import__('os'), edges"), "unexpected Call"),
    ],
)
def test_bad_genotypes_are_reported(text, message):
    with pytest.raises(ConvertError, match=message):
        genotype_to_spec(read_genotype(text), space("ntu"))


def test_a_genotype_of_another_space_is_refused():
    with pytest.raises(ConvertError, match="2 cells with 2 step lists"):
        genotype_to_spec(
            read_genotype(NTU),
            mmnasdsl.load(ROOT / "tests/specs/bmnas/valid/every-construct.mmnas"),
        )


def test_convert_command_both_ways(tmp_path):
    runner = CliRunner()
    source = tmp_path / "best.txt"
    source.write_text(NTU + "\n")
    out = tmp_path / "net.mmnas"
    result = runner.invoke(
        app,
        [
            "convert",
            str(source),
            "--space",
            str(ROOT / "specs" / "bmnas-ntu.mmnas"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "cell c1(layer4, fc7) = LinearGLU(x, y) LinearGLU(s1, x)" in out.read_text()
    back = runner.invoke(app, ["convert", str(out)])
    assert back.exit_code == 0 and back.stdout.strip() == NTU
    missing = runner.invoke(app, ["convert", str(source)])
    assert missing.exit_code == 1 and "--space" in str(missing.exception)
