"""Formatter: canonical text, round trip `parse(format(s)) == s`, idempotence, comments."""

from __future__ import annotations

import math

import pytest
from _specs import KEYWORDS, SHIPPED, VALID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.spec import (
    Arg,
    Call,
    Choice,
    DataDecl,
    Group,
    HeadDecl,
    Ident,
    InputDecl,
    ListValue,
    ModelDecl,
    Mult,
    Option,
    PoolDecl,
    Ratio,
    Ref,
    Repeat,
    SectionDecl,
    Spec,
    StackDecl,
)

# ------------------------------------------------------------------------- strategies

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(
    lambda n: n not in KEYWORDS
)
text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
factors = st.floats(min_value=0, max_value=1e6, allow_nan=False).filter(lambda x: math.isfinite(x))

scalars = st.one_of(
    st.integers(-(10**6), 10**12),
    floats,
    text,
    names.map(lambda n: Ident(name=n)),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: Ratio(left=t[0], right=t[1])),
    factors.map(lambda f: Mult(factor=f)),
)


def _calls(values, bare: bool = True):
    """Calls; a bare `name` (no parentheses) only where a statement takes a call, since as
    an option value it is an identifier."""
    args = st.lists(st.builds(Arg, key=st.none() | names, value=values), max_size=3)
    with_parens = st.builds(Call, name=names, args=args.map(tuple))
    return with_parens | st.builds(Call, name=names, parens=st.just(False)) if bare else with_parens


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: ListValue(items=tuple(v))),
        _calls(inner, bare=False),
    ),
    max_leaves=6,
)
options = st.lists(st.builds(Option, key=names, value=values), max_size=4).map(tuple)
refs = names.map(lambda n: Ref(name=n))
choices = st.lists(refs, min_size=2, max_size=4).map(lambda r: Choice(options=tuple(r)))
items = st.recursive(
    refs | choices,
    lambda inner: st.one_of(
        st.builds(
            Repeat,
            body=st.lists(inner, min_size=1, max_size=3).map(tuple),
            count=st.integers(-3, 50),
        ),
        st.builds(Group, body=st.lists(inner, min_size=1, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)
bodies = st.lists(items, min_size=1, max_size=5).map(tuple)

statements = st.one_of(
    st.builds(ModelDecl, name=names, options=options),
    st.builds(InputDecl, name=names, source=_calls(values)),
    st.builds(PoolDecl, name=names, members=st.lists(refs, min_size=1, max_size=4).map(tuple)),
    st.builds(
        StackDecl,
        kind=st.sampled_from(["encoder", "decoder"]),
        stream=names,
        guide=st.none() | names,
        body=bodies,
    ),
    st.builds(HeadDecl, call=_calls(values)),
    st.builds(DataDecl, call=_calls(values)),
    st.builds(SectionDecl, kind=st.sampled_from(["search", "train"]), options=options),
)
specs = st.lists(statements, max_size=8).map(lambda s: Spec(statements=tuple(s)))


# ----------------------------------------------------------------------------- tests


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_round_trip(spec):
    text = format_spec(spec)
    assert parse(text) == spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_idempotent(spec):
    once = format_spec(spec)
    assert format_spec(parse(once)) == once


@pytest.mark.parametrize("path", SHIPPED + VALID, ids=lambda p: p.name)
def test_shipped_specs_are_formatted(path):
    text = path.read_text(encoding="utf-8")
    assert format_spec(parse(text)) == text


def test_canonical_layout():
    spec = parse(
        "model m{d_model=512 ffn=4x}input t=words(max_len=14,lstm)"
        "encoder t=(SA|FFN)*2 (SA)*3 (SA FFN)*6 search{split=4:1 lr=1e-4}"
    )
    assert format_spec(spec) == (
        "model m {\n  d_model = 512\n  ffn = 4x\n}\n"
        "input t = words(max_len = 14, lstm)\n"
        "encoder t = (SA | FFN) * 2 SA * 3 (SA FFN) * 6\n"
        "search {\n  split = 4:1\n  lr = 0.0001\n}\n"
    )


def test_blank_lines_follow_the_source_or_the_statement_kind():
    text = "input a = words\n\n\ninput b = objects\nencoder a = SA\n"
    assert format_spec(parse(text)) == "input a = words\n\ninput b = objects\nencoder a = SA\n"
    built = Spec(statements=tuple(parse(text).statements))  # same nodes, positions dropped
    built = Spec(
        statements=tuple(s.model_copy(update={"span": Spec().span}) for s in built.statements)
    )
    assert format_spec(built) == "input a = words\ninput b = objects\n\nencoder a = SA\n"


COMMENTED = """\
# header line 1
# header line 2

model m {  # trailing on the header
  # before d_model
  d_model = 512  # after d_model
}

# before the input
input t = words(max_len = 3,  # inside a call
  lstm)
encoder t = SA  # after the stack
# tail
"""


def test_comments_are_kept():
    out = format_spec(parse(COMMENTED))
    assert (
        out
        == """\
# header line 1
# header line 2

model m {  # trailing on the header
  # before d_model
  d_model = 512  # after d_model
}

# before the input
# inside a call
input t = words(max_len = 3, lstm)
encoder t = SA  # after the stack
# tail
"""
    )
    assert format_spec(parse(out)) == out


def test_every_comment_survives_formatting():
    spec = parse(COMMENTED)
    out = format_spec(spec)
    assert [c.text for c in parse(out).comments] == [c.text for c in spec.comments]


def test_searcher_output_keeps_comments_and_settings():
    space = parse((SHIPPED[0].parent / "vqa.mmnas").read_text(encoding="utf-8"))
    enc = ["SA"] * 4 + ["FFN"] * 4 + ["SA"] + ["FFN"] * 3
    dec = ["GA", "GA", "FFN", "FFN", "GA", "FFN", "RSA", "GA", "FFN", "GA", "RSA", "FFN"]
    dec += ["RSA", "SA", "FFN", "RSA", "GA", "FFN"]
    out = format_spec(space.replace_stacks({"encoder": enc, "decoder": dec}), header="epoch 3")
    concrete = parse(out)
    assert out.startswith("# epoch 3\n\nmodel vqa {")  # the space's header is not the net's
    assert "# 64 per head" in out  # comments inside the spec stay
    assert [b.choices[0] for b in concrete.blocks()] == enc + dec
    assert concrete.is_concrete and concrete.model == space.model
    assert concrete.section("train") == space.section("train")


def test_overflowing_float_keeps_its_meaning():
    spec = parse("search { lr = 1e999 clip = -1e999 }")
    assert parse(format_spec(spec)) == spec
    assert format_spec(spec) == "search {\n  lr = 1e999\n  clip = -1e999\n}\n"


def test_strings_and_floats_round_trip():
    spec = parse('data h5(root = "a\\\\b \\"q\\" \\t é")\nsearch { lr = 1e-09 clip = 0.1 }')
    assert parse(format_spec(spec)) == spec
    assert 'root = "a\\\\b \\"q\\" \\t é"' in format_spec(spec)
    assert "lr = 1e-09" in format_spec(spec)


def test_concrete_copy_drops_the_space_header_but_keeps_other_comments():
    text = (
        "# the search space: 2^2 architectures\n\n"
        "input t = words\ninput i = objects\n"
        "# the encoder\nencoder t = (SA | FFN) * 2\nhead vqa\n"
    )
    out = format_spec(parse(text).replace_stacks({"encoder": ["SA", "FFN"]}), header="epoch 1")
    assert "search space" not in out
    assert out.startswith("# epoch 1\n\ninput t = words\n")
    assert "# the encoder\nencoder t = SA FFN" in out
