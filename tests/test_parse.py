"""Parser: text -> Spec, spans, comments, values, and located syntax errors."""

from __future__ import annotations

import pytest
from _specs import SHIPPED, VALID

from mmnasdsl.lang.errors import SpecError
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.spec import (
    Call,
    Choice,
    Group,
    Ident,
    ListValue,
    Mult,
    Ratio,
    Ref,
    Repeat,
    StackDecl,
)


def _stack(text: str) -> StackDecl:
    return parse(text).stacks[0]


@pytest.mark.parametrize("path", SHIPPED + VALID, ids=lambda p: p.name)
def test_every_example_parses(path):
    spec = parse(path.read_text(encoding="utf-8"), str(path))
    assert spec.stacks and spec.source == str(path)


def test_sequence_constructs():
    st = _stack("decoder image(guide = text) = GA (SA | FFN) * 2 (SA GA) FFN * 3 enc")
    assert st.guide == "text"
    assert st.body == (
        Ref(name="GA"),
        Repeat(body=(Choice(options=(Ref(name="SA"), Ref(name="FFN"))),), count=2),
        Group(body=(Ref(name="SA"), Ref(name="GA"))),
        Repeat(body=(Ref(name="FFN"),), count=3),
        Ref(name="enc"),
    )


def test_bare_choice_repeat_means_the_parenthesised_one():
    assert _stack("encoder t = SA | FFN * 2").body == _stack("encoder t = (SA | FFN) * 2").body


def test_single_ref_group_repeat_is_a_plain_repeat():
    assert _stack("encoder t = (SA) * 3").body == _stack("encoder t = SA * 3").body


def test_values():
    spec = parse(
        'model m { a = 4x b = 4:1 c = -1.5e-3 d = [1, 2.5] e = "s#\\"x\\n" f = true '
        "g = 12 h = 2.5x i = glove(300) }"
    )
    values = {o.key: o.value for o in spec.model.options}
    assert values["a"] == Mult(factor=4.0) and values["h"] == Mult(factor=2.5)
    assert values["b"] == Ratio(left=4, right=1)
    assert values["c"] == -0.0015 and isinstance(values["c"], float)
    assert values["d"] == ListValue(items=(1, 2.5))
    assert values["e"] == 's#"x\n'
    assert values["f"] == Ident(name="true")
    assert values["g"] == 12 and isinstance(values["g"], int)
    assert isinstance(values["i"], Call) and values["i"].name == "glove"


def test_unicode_strings_survive():
    assert parse('data h5(root = "données/ü")').data.call.args[0].value == "données/ü"


def test_spans_point_at_the_text():
    text = "input text = words\nencoder text = SA\n  RSA"
    spec = parse(text)
    st = spec.stacks[0]
    assert (st.span.line, st.span.column) == (2, 1)
    assert (st.stream_span.line, st.stream_span.column) == (2, 9)
    assert (st.body[1].span.line, st.body[1].span.column) == (3, 3)
    opt = parse("model m {\n  d_model = 512\n}").model.options[0]
    assert (opt.value_span.line, opt.value_span.column, opt.value_span.end_column) == (2, 13, 16)


def test_equality_ignores_spans_and_comments():
    a = parse("# one\ninput text = words\nencoder text(guide = x) = SA")
    b = parse("input  text=words   encoder\ntext (guide=x)=\n SA # two")
    assert a == b
    assert a.comments != b.comments


def test_comments_are_kept_with_positions():
    spec = parse("# head\nmodel m {  # after\n}\n")
    assert [(c.text, c.span.line) for c in spec.comments] == [("# head", 1), ("# after", 2)]


def test_keywords_are_reserved():
    # `decoder` cannot be an op name, so an empty sequence fails where it is empty
    with pytest.raises(SpecError) as info:
        parse("encoder text =\ndecoder image = SA", "x.mmnas")
    diag = info.value.diagnostics[0]
    assert (diag.span.line, diag.span.column) == (2, 1)
    assert diag.message == "unexpected 'decoder'"


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ("serach { }", "unexpected 'serach' (did you mean 'search'?)", (1, 1)),
        ("input t = words\nencoer t = SA", "unexpected 'encoer' (did you mean 'encoder'?)", (2, 1)),
        ("encoder t = SA ; FFN", "unexpected character ';'", (1, 16)),
        ("head vqa(", "unexpected end of file", (1, 10)),
        ("encoder t = SA *", "unexpected end of file", (1, 17)),
    ],
)
def test_syntax_errors_are_located(text, message, where):
    with pytest.raises(SpecError) as info:
        parse(text, "x.mmnas")
    diag = info.value.diagnostics[0]
    assert diag.message == message
    assert (diag.span.line, diag.span.column) == where
    rendered = info.value.render()
    assert rendered.startswith(f"x.mmnas:{where[0]}:{where[1]}: error: {message}")
    assert "^" in rendered and "= expected" in rendered


def test_syntax_error_lists_expected_tokens_in_words():
    with pytest.raises(SpecError) as info:
        parse("encoder t = SA *")
    assert info.value.diagnostics[0].hint == "expected an integer"
