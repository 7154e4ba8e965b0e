"""Semantic checks: the broken-spec corpus (one file per error kind) and the good specs."""

from __future__ import annotations

import pytest
from _specs import INVALID, KEYWORDS, SHIPPED, VALID, expected_errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_format import specs

import mmnasdsl
import mmnasdsl.lang.check
from mmnasdsl import diagnostics
from mmnasdsl.lang.errors import SpecError
from mmnasdsl.lang.parse import parse


def _errors(path) -> SpecError:
    with pytest.raises(SpecError) as info:
        mmnasdsl.load(path)
    return info.value


def test_the_corpus_is_large_enough():
    assert len(INVALID) >= 40
    assert all(expected_errors(p) for p in INVALID), "every invalid spec declares its errors"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_reports_exactly_its_errors(path):
    expected = expected_errors(path)
    exc = _errors(path)
    got = [(d.span.line, d.span.column, d.message) for d in exc.diagnostics]
    assert len(got) == len(expected), got
    for (line, col, fragment), (gline, gcol, message) in zip(expected, got, strict=True):
        assert (gline, gcol) == (line, col), message
        assert fragment in message


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_renders_file_line_col_caret_and_hint(path):
    exc = _errors(path)
    lines = exc.render().splitlines()
    source_lines = path.read_text(encoding="utf-8").splitlines()
    for diag in exc.diagnostics:
        head = f"{path}:{diag.span.line}:{diag.span.column}: error: {diag.message}"
        i = lines.index(head)
        assert lines[i + 1] == "    " + source_lines[diag.span.line - 1]
        caret = lines[i + 2]
        assert caret.startswith("    " + " " * (diag.span.column - 1) + "^")
        assert caret.strip() == "^" * len(caret.strip())
        assert lines[i + 3].startswith("    = expected")


@pytest.mark.parametrize("path", SHIPPED + VALID, ids=lambda p: p.name)
def test_good_specs_pass(path):
    spec = mmnasdsl.load(path)
    assert diagnostics(spec) == []
    assert spec.blocks(), "a good spec has blocks"


def test_all_errors_come_back_together_in_order():
    spec = parse(
        "model m { d_model = 100 heads = 3 }\n"
        "input t = words\ninput i = objects(relations = none)\n"
        "encoder t = SA RSAA\ndecoder i = GA RSA\nhead vqx\n"
    )
    got = [(d.span.line, d.message.split(" (")[0]) for d in diagnostics(spec)]
    assert got == [
        (1, "d_model = 100 is not divisible by heads = 3"),
        (4, "unknown op or pool 'RSAA'"),
        (5, "GA needs a guide, but decoder 'i' has none"),
        (5, "RSA needs relation features, but input 'i' has `relations = none`"),
        (6, "unknown head 'vqx'"),
    ]


def test_paper_spec_sizes():
    assert mmnasdsl.load("specs/vqa.mmnas").search_space_size() == 2**12 * 4**18
    for name in ("mcan", "mmnasnet-vqa", "mmnasnet-itm", "mmnasnet-vg"):
        spec = mmnasdsl.load(f"specs/{name}.mmnas")
        assert spec.is_concrete and len(spec.blocks()) == 30


def test_mcan_is_the_paper_baseline():
    spec = mmnasdsl.load("specs/mcan.mmnas")
    ops = {k: [b.choices[0] for b in spec.blocks() if b.stack == k] for k in ("encoder", "decoder")}
    assert ops == {"encoder": ["SA", "FFN"] * 6, "decoder": ["SA", "GA", "FFN"] * 6}


def test_nested_pools_expand_once_per_op():
    spec = mmnasdsl.loads(
        "input t = words\ninput i = objects\npool a = SA | GA\n"
        "pool b = a | SA | FFN\nencoder t = SA\ndecoder i(guide = t) = b\nhead vqa"
    )
    assert spec.blocks()[-1].choices == ("SA", "GA", "FFN")


def test_check_without_text_still_locates():
    spec = parse("input t = words\nencoder t = SAA\nhead vqa", "x.mmnas")
    with pytest.raises(SpecError) as info:
        mmnasdsl.lang.check.check(spec, mmnasdsl.catalog())
    assert info.value.render().startswith("x.mmnas:2:13: error: unknown op or pool 'SAA'")


# ------------------------------------------------ never anything but a SpecError

_TOKENS = [
    *KEYWORDS,
    "words",
    "objects",
    "SA",
    "GA",
    "RSA",
    "FFN",
    "vqa",
    "shapes",
    "h5",
    "text",
    "image",
    "enc",
    "=",
    "|",
    "*",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "2",
    "-1",
    "0.5",
    "4x",
    "4:1",
    '"s"',
    "d_model",
    "heads",
    "max_len",
    "relations",
    "none",
    "lstm",
    "\n",
    "# c\n",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=40))
def test_any_token_soup_gives_spec_error_or_spec(tokens):
    try:
        mmnasdsl.loads(" ".join(tokens), "fuzz.mmnas")
    except SpecError as exc:
        assert exc.diagnostics and exc.render().startswith("fuzz.mmnas")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_checking_any_spec_only_reports(spec):
    for diag in diagnostics(spec):
        assert diag.message and diag.hint
