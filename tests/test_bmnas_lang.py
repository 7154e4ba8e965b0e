"""The BM-NAS language (`space bmnas`): grammar, checks (the corpus of tests/specs/bmnas/),
sizes, formatting (round trip and idempotence on generated specs, comments kept) and `check`."""

from __future__ import annotations

import math

import pytest
from _specs import BMNAS_INVALID, BMNAS_KEYWORDS, BMNAS_SHIPPED, BMNAS_VALID, ROOT, expected_errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import mmnasdsl
from mmnasdsl.cli import app
from mmnasdsl.lang.bmnas_spec import BMNasSpec, CellDecl, OpCall, StepRepeat, TapsDecl
from mmnasdsl.lang.errors import SpecError
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.spec import (
    Arg,
    Call,
    Choice,
    Ident,
    ModelDecl,
    Option,
    PoolDecl,
    Ref,
    SpaceDecl,
)

GOOD = BMNAS_SHIPPED + BMNAS_VALID


# ------------------------------------------------------------------- parse and check


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_specs_parse_check_and_are_formatted(path):
    spec = mmnasdsl.load(path)
    assert isinstance(spec, BMNasSpec) and spec.kind == "bmnas"
    assert spec.cells() and spec.tap_names
    assert mmnasdsl.diagnostics(spec) == []
    text = path.read_text(encoding="utf-8")
    assert format_spec(parse(text)) == text


def test_the_corpus_covers_the_checks():
    assert len(BMNAS_INVALID) >= 30
    assert all(expected_errors(p) for p in BMNAS_INVALID)


@pytest.mark.parametrize("path", BMNAS_INVALID, ids=lambda p: p.stem)
def test_invalid_spec_reports_exactly_its_errors(path):
    expected = expected_errors(path)
    with pytest.raises(SpecError) as info:
        mmnasdsl.load(path)
    got = [(d.span.line, d.span.column, d.message) for d in info.value.diagnostics]
    assert len(got) == len(expected), got
    for (line, col, fragment), (gline, gcol, message) in zip(expected, got, strict=True):
        assert (gline, gcol) == (line, col), message
        assert fragment in message
    rendered = info.value.render()
    assert "^" in rendered and "= expected" in rendered


@pytest.mark.parametrize("path", BMNAS_INVALID, ids=lambda p: p.stem)
def test_the_error_is_in_the_language_docs(path):
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert f"| `bmnas/{path.stem}` |" in doc, path.stem


def test_cells_expand_pools_repeats_and_pairs():
    spec = mmnasdsl.load(ROOT / "tests" / "specs" / "bmnas" / "valid" / "every-construct.mmnas")
    c1, c2, c3, c4 = spec.cells()
    assert (
        c1.inputs is None
        and [s.ops for s in c1.steps] == [("Sum", "ConcatFC", "ScaleDotAttn", "LinearGLU")] * 2
    )
    assert (
        c2.inputs == ("conv", "c1") and c2.concat == 1 and c2.steps[1].ops == ("Sum", "LinearGLU")
    )
    assert [s.inputs for s in c3.steps] == [("x", "y"), ("s1", "y"), ("s1", "y")]
    assert c3.concat == 3 and c4.steps[0].inputs == ("x", "y") and c4.steps[1].inputs is None
    assert spec.states() == ["conv", "pool5", "seq", "vec", "c1", "c2", "c3", "c4"]
    assert spec.modalities == {"image": ["conv", "pool5"], "text": ["seq", "vec"]}


def test_search_space_size_counts_pairs_step_inputs_and_ops():
    spec = mmnasdsl.load(ROOT / "tests" / "specs" / "bmnas" / "valid" / "minimal.mmnas")
    # c1: C(3, 2) pairs; step 1: (x, y) in 2 orders x 2 ops; step 2: 3*2 ordered x 2 ops
    assert spec.search_space_size() == math.comb(3, 2) * (2 * 2) * (6 * 2)
    assert spec.size_formula() == "2^3*3*6 = 144"
    assert not spec.is_concrete
    ntu = mmnasdsl.load(ROOT / "specs" / "bmnas-ntu.mmnas")
    per_cell = (2 * 4) * (6 * 4)
    assert ntu.search_space_size() == math.comb(8, 2) * math.comb(9, 2) * per_cell**2


def test_a_concrete_spec_is_concrete():
    spec = mmnasdsl.load(ROOT / "tests" / "specs" / "bmnas" / "valid" / "concrete.mmnas")
    assert spec.is_concrete and spec.search_space_size() == 1


def test_keywords_are_reserved_only_in_bmnas_specs():
    with pytest.raises(SpecError, match="unexpected 'cell'"):
        parse("space bmnas\ninput cell { a = tap(channels = 1) }\n")
    mmnasdsl.loads("input cell = words\ninput image = objects\nencoder cell = SA\nhead vqa\n")


def test_check_prints_each_shipped_space_and_its_size():
    result = CliRunner().invoke(app, ["check", *map(str, BMNAS_SHIPPED)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(BMNAS_SHIPPED) >= 4
    sizes = {
        "bmnas-ntu.mmnas": "2^2*4^4*6^2*28*36 = 37158912",
        "bmnas-mmimdb.mmnas": "2^2*4^2*15*21 = 20160",
        "bmnas-ego.mmnas": "2^2*4^6*6^2*12^2*28*36 = 85614133248",
    }
    for name, size in sizes.items():
        assert any(name in x and x.endswith(f"search space {size}") for x in lines), lines


# --------------------------------------------------------------------------- formatting

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in BMNAS_KEYWORDS
)
ints = st.integers(1, 4096)
refs = names.map(lambda n: Ref(name=n))
tap_calls = st.builds(
    lambda c, n: Call(
        name="tap",
        args=(Arg(key="channels", value=c), *((Arg(key="length", value=n),) if n else ())),
    ),
    ints,
    st.none() | ints,
)
taps = st.builds(
    TapsDecl,
    name=names,
    options=st.lists(st.builds(Option, key=names, value=tap_calls), max_size=3).map(tuple),
)
units = st.one_of(
    refs,
    st.lists(refs, min_size=2, max_size=3).map(lambda r: Choice(options=tuple(r))),
    st.builds(OpCall, name=names, x=names, y=names),
)
steps = st.one_of(units, st.builds(StepRepeat, step=units, count=st.integers(-2, 9)))
cell_args = st.lists(
    st.one_of(
        names.map(lambda n: Arg(value=Ident(name=n))),
        st.builds(Arg, key=names, value=st.integers(0, 9)),
    ),
    max_size=3,
).map(tuple)
cells = st.builds(
    CellDecl, name=names, args=cell_args, body=st.lists(steps, min_size=1, max_size=4).map(tuple)
)
statements = st.one_of(
    taps,
    cells,
    st.builds(PoolDecl, name=names, members=st.lists(refs, min_size=1, max_size=3).map(tuple)),
    st.builds(
        ModelDecl,
        name=names,
        options=st.lists(st.builds(Option, key=names, value=ints), max_size=3).map(tuple),
    ),
)
specs = st.lists(statements, max_size=7).map(
    lambda s: BMNasSpec(statements=(SpaceDecl(name="bmnas"), *s))
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_round_trip(spec):
    assert parse(format_spec(spec)) == spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_idempotent(spec):
    once = format_spec(spec)
    assert format_spec(parse(once)) == once


def test_canonical_layout_and_comments_kept():
    text = (
        "# head\nspace bmnas\ninput a{a0=tap(channels=4)  # vec\na1=tap(channels=4,length=2)}\n"
        "cell c1(a0,a1,concat=1)=LinearGLU(x,y) Sum(s1,x)*2 # fixed\n# end\n"
    )
    assert format_spec(parse(text)) == (
        "# head\nspace bmnas\ninput a {\n  a0 = tap(channels = 4)  # vec\n"
        "  a1 = tap(channels = 4, length = 2)\n}\n"
        "cell c1(a0, a1, concat = 1) = LinearGLU(x, y) Sum(s1, x) * 2  # fixed\n# end\n"
    )


def test_the_write_back_fixes_the_cells_and_drops_the_space_header():
    space = mmnasdsl.load(ROOT / "specs" / "bmnas-xor.mmnas")
    plans = [
        c.model_copy(
            update={
                "inputs": ("a2", "b0"),
                "steps": tuple(
                    s.model_copy(update={"ops": ("Sum",), "inputs": ("x", "y")}) for s in c.steps
                ),
            }
        )
        for c in space.cells()
    ]
    concrete = space.replace_cells(plans)
    text = format_spec(concrete, header="found")
    assert "cell c1(a2, b0) = Sum(x, y) * 2" in text
    assert "planted-pair task" not in text and text.startswith("# found\n\nspace bmnas")
    again = mmnasdsl.loads(text)
    assert again.is_concrete and again.cells()[0].inputs == ("a2", "b0")


def test_the_examples_of_the_bmnas_docs_parse_and_check():
    import re

    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```\n(.*?)```", doc, flags=re.S) if "space bmnas" in b]
    assert len(blocks) >= 2
    for block in blocks:
        spec = parse(block)
        assert spec.kind == "bmnas" and spec.cells()
    assert mmnasdsl.loads(blocks[0]).search_space_size() == 11612160
