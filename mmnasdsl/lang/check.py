"""Semantic checks on a parsed Spec: names, option values, guides, relations, heads.

`check` collects every problem it finds and raises them together as one `SpecError`,
sorted by position, so a user fixes a spec in one pass. Each problem points at the text
that caused it and says what was expected. The option schemas of `mmnasdsl.lang.settings`
and of each head are the single source of what an option may be; this module only maps
their validation errors back onto the spec's spans. Ops and heads come from their
registries (imported lazily: they pull in torch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mmnasdsl.lang.catalog import Catalog
from mmnasdsl.lang.errors import Diagnostic, SpecError
from mmnasdsl.lang.registry import did_you_mean
from mmnasdsl.lang.settings import (
    INPUT_KINDS,
    DataSettings,
    ModelSettings,
    SearchSettings,
    TrainSettings,
    options_dict,
)
from mmnasdsl.lang.spec import (
    Arg,
    Choice,
    DataDecl,
    HeadDecl,
    Ident,
    InputDecl,
    Item,
    ListValue,
    ModelDecl,
    Option,
    PoolDecl,
    Ref,
    Repeat,
    SectionDecl,
    Span,
    Spec,
    StackDecl,
)

# More blocks than any sensible network; also keeps a typo like `SA * 10000000` from
# expanding into millions of blocks before it is reported.
MAX_BLOCKS = 4096
# Candidate names compared for did-you-mean suggestions per spec: a spec with thousands of
# unknown names among thousands of pools would otherwise spend minutes on suggestions
# nobody reads (only the first `errors.MAX_SHOWN` errors are printed).
SUGGESTION_BUDGET = 50_000
MAX_SHOWN_VALUE = 60  # characters of a value quoted in a message

SECTIONS: dict[str, type[BaseModel]] = {"search": SearchSettings, "train": TrainSettings}


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _at(span: Span) -> str:
    return f"{span.line}:{span.column}"


def _one_of(names: Iterable[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


class Checker:
    """One pass over a spec, gathering diagnostics; `run` returns them by position."""

    def __init__(self, spec: Spec, catalog: Catalog) -> None:
        self.spec = spec
        self.catalog = catalog
        self.ops = {name: tuple(getattr(catalog.ops[name], "needs", ())) for name in catalog.ops}
        self.heads = dict(catalog.heads)
        self.diags: list[Diagnostic] = []
        # Looked up once: the spec's properties rebuild their dicts on every access, and
        # the checks below ask once per reference (quadratic on a spec of many names).
        self.pools = spec.pools
        self.inputs = spec.inputs
        self.pool_names = list(dict.fromkeys(d.name for d in spec.of_type(PoolDecl)))
        self.budget = SUGGESTION_BUDGET
        self.ref_hints: dict[str, str] = {}  # unknown op/pool name -> its suggestion

    def error(self, message: str, span: Span, hint: str | None = None) -> None:
        self.diags.append(Diagnostic(message, span, hint))

    def suggest(self, name: str, names: list[str]) -> str:
        """` (did you mean 'X'?)`, while the spec's suggestion budget lasts."""
        self.budget -= len(names)
        return did_you_mean(name, names) if self.budget >= 0 else ""

    def first_of_each(self, decls: Iterable[Any], what: str) -> Iterator[Any]:
        """The declarations (inputs, pools) whose name is new; a repeated name is reported."""
        seen: dict[str, Span] = {}
        for decl in decls:
            if decl.name in seen:
                self.error(
                    f"duplicate {what} '{decl.name}' (the first is at {_at(seen[decl.name])})",
                    decl.span,
                    f"expected each {what} name once",
                )
                continue
            seen[decl.name] = decl.span
            yield decl

    def unknown(self, what: str, name: str, names: Iterable[str], span: Span) -> None:
        """`unknown <what> '<name>'` with a did-you-mean, expecting one of `names`."""
        names = list(names)
        self.error(
            f"unknown {what} '{name}'{self.suggest(name, names)}",
            span,
            f"expected {_one_of(names)}",
        )

    def run(self) -> list[Diagnostic]:
        for step in (
            self.check_singletons,
            self.check_required,
            self.check_model,
            self.check_inputs,
            self.check_pools,
            self.check_stacks,
            self.check_guides,
            self.check_head,
            self.check_data,
            self.check_sections,
        ):
            step()
        return sorted(self.diags, key=lambda d: (d.span.line, d.span.column))

    # -- statements --------------------------------------------------------------------

    def check_singletons(self) -> None:
        """At most one model, head, data and section of each kind: later ones would be ignored."""
        seen: dict[str, Span] = {}
        for stmt in self.spec.statements:
            what = _singleton_kind(stmt)
            if what is None:
                continue
            if what in seen:
                self.error(
                    f"duplicate {what} statement (the first is at {_at(seen[what])})",
                    stmt.span,
                    "expected one per spec; merge the two",
                )
            else:
                seen[what] = stmt.span

    def check_required(self) -> None:
        """A network needs inputs, blocks and a head; the model section is optional."""
        end = _end_span(self.spec)
        if not self.spec.inputs:
            self.error(
                "the spec declares no input",
                end,
                "expected `input NAME = words(...)` or `input NAME = objects(...)`",
            )
        if not self.spec.stacks:
            self.error(
                "the spec declares no encoder or decoder stack",
                end,
                "expected e.g. `encoder text = SA FFN`",
            )
        if self.spec.head is None:
            self.error(
                "the spec declares no head",
                end,
                f"expected `head TASK(...)` with TASK one of {_one_of(self.heads)}",
            )

    def check_model(self) -> None:
        decl = self.spec.model
        if decl is None:
            return
        self.validate(ModelSettings, decl.options, decl.span, "model option")

    def check_inputs(self) -> None:
        kinds: dict[str, str] = {}
        for decl in self.first_of_each(self.spec.of_type(InputDecl), "input"):
            self.check_input(decl, kinds)

    def check_input(self, decl: InputDecl, kinds: dict[str, str]) -> None:
        call = decl.source
        schema = INPUT_KINDS.get(call.name)
        if schema is None:
            self.unknown("input kind", call.name, INPUT_KINDS, call.span)
            return
        if call.name in kinds:
            self.error(
                f"a second {call.name} input '{decl.name}' (the first is '{kinds[call.name]}')",
                decl.span,
                "expected one words input and one objects input: a batch carries one of each",
            )
            return
        kinds[call.name] = decl.name
        self.validate(schema, call.args, call.span, f"{call.name} option")

    def check_pools(self) -> None:
        cyclic = cyclic_pools(self.pools)
        for decl in self.first_of_each(self.spec.of_type(PoolDecl), "pool"):
            if decl.name in self.ops:
                self.error(
                    f"pool '{decl.name}' has the name of an op",
                    decl.span,
                    "expected a pool name that is not an op name, e.g. 'enc' or 'dec'",
                )
            elif decl.name in cyclic:
                self.error(
                    f"pool '{decl.name}' includes itself",
                    decl.span,
                    "expected pools to be built from ops and other pools without a cycle",
                )
            else:
                self.check_candidates(decl.members, f"pool '{decl.name}'")

    def check_candidates(self, refs: Iterable[Ref], where: str) -> None:
        """Refs of a pool or choice: known names, none written twice. (An op reached twice
        through different pools is one candidate: expansion keeps the first.)"""
        seen: set[str] = set()
        for ref in refs:
            if not self.check_ref(ref):
                continue
            if ref.name in seen:
                self.error(
                    f"'{ref.name}' appears twice in {where}",
                    ref.span,
                    "expected each candidate once",
                )
            seen.add(ref.name)

    def check_ref(self, ref: Ref) -> bool:
        if ref.name in self.ops or ref.name in self.pools:
            return True
        pool_names = self.pool_names
        pools = f", or a pool: {_one_of(pool_names)}" if pool_names else ""
        if ref.name not in self.ref_hints:  # (a name written many times is matched once)
            names = list(self.ops) + pool_names
            self.ref_hints[ref.name] = self.suggest(ref.name, names)
        self.error(
            f"unknown op or pool '{ref.name}'{self.ref_hints[ref.name]}",
            ref.span,
            f"expected an op: {_one_of(self.ops)}{pools}",
        )
        return False

    # -- stacks ------------------------------------------------------------------------

    def check_stacks(self) -> None:
        streams: dict[str, StackDecl] = {}
        kinds: dict[str, StackDecl] = {}
        for st in self.spec.stacks:
            if st.stream in streams:
                first = streams[st.stream]
                self.error(
                    f"stream '{st.stream}' already has a stack ({first.kind} at {_at(first.span)})",
                    st.span,
                    "expected one stack per input",
                )
            elif st.kind in kinds:
                self.error(
                    f"a second {st.kind} stack (the first is at {_at(kinds[st.kind].span)})",
                    st.span,
                    "expected one encoder and one decoder",
                )
            streams.setdefault(st.stream, st)
            kinds.setdefault(st.kind, st)
            self.check_stack(st)

    def check_stack(self, st: StackDecl) -> None:
        if st.stream not in self.inputs:
            self.error(
                f"unknown input '{st.stream}'{self.suggest(st.stream, list(self.inputs))}",
                st.stream_span if st.stream_span.line else st.span,
                f"expected an input: {_one_of(self.inputs)}",
            )
        ok = self.check_items(st.body)
        n_blocks = count_blocks(st.body)
        if n_blocks > MAX_BLOCKS:
            big = n_blocks >= 10**18  # (a count of 64 nested repeats has ~1000 digits)
            shown = f"about 10^{round(math.log10(n_blocks))}" if big else str(n_blocks)
            self.error(
                f"{st.kind} '{st.stream}' has {shown} blocks",
                st.span,
                f"expected at most {MAX_BLOCKS} blocks per stack",
            )
            return
        if ok and n_blocks == 0:
            self.error(
                f"{st.kind} '{st.stream}' has no blocks",
                st.span,
                "expected at least one op in the sequence",
            )
        if ok and not any(name in self.ops for name in self.pools):
            self.check_needs(st)  # (a pool shadowing an op is reported; its effects are not)

    def check_items(self, items: tuple[Item, ...]) -> bool:
        """Names and repeat counts of a sequence; False when a name is unknown."""
        ok = True
        for item in items:
            if isinstance(item, Ref):
                ok = self.check_ref(item) and ok
            elif isinstance(item, Choice):
                before = len(self.diags)
                self.check_candidates(item.options, "this choice")
                ok = ok and len(self.diags) == before
            else:
                if isinstance(item, Repeat) and item.count < 1:
                    self.error(
                        f"repeat count must be at least 1, got {item.count}",
                        _count_span(item),
                        "expected `item * n` with n >= 1",
                    )
                ok = self.check_items(item.body) and ok
        return ok

    def check_needs(self, st: StackDecl) -> None:
        """GA needs the stack to have a guide; RSA needs an objects stream with relations."""
        reported: set[tuple[int, int, str]] = set()
        relations = self._has_relations(st.stream)
        for block in self.spec.blocks(st):
            for op in block.choices:
                key = (block.span.line, block.span.column, op)
                needs = self.ops.get(op, ())
                if key in reported:
                    continue
                if "guide" in needs and st.guide is None:
                    reported.add(key)
                    self.error(
                        f"{op} needs a guide, but {st.kind} '{st.stream}' has none",
                        block.span,
                        f"expected `{st.kind} {st.stream}(guide = INPUT) = ...`",
                    )
                if "relations" in needs and relations is not None:
                    reported.add(key)
                    self.error(
                        f"{op} needs relation features, but {relations}",
                        block.span,
                        "expected an objects input with `relations = box4`, or drop "
                        f"{op} from this stack",
                    )

    def _has_relations(self, stream: str) -> str | None:
        """None when the stream has relation features, else why not (for the message)."""
        decl = self.inputs.get(stream)
        if decl is None or decl.source.name not in INPUT_KINDS:
            return None  # reported elsewhere
        if decl.source.name == "words":
            return f"'{stream}' is a words input"
        if options_dict(decl.source.args).get("relations") == "none":
            return f"input '{stream}' has `relations = none`"
        return None

    def check_guides(self) -> None:
        guided: dict[str, StackDecl] = {}
        for st in self.spec.stacks:
            if st.guide is None:
                continue
            span = st.guide_span
            if st.guide == st.stream:
                self.error(
                    f"{st.kind} '{st.stream}' is guided by itself",
                    span,
                    "expected the guide to be another input, e.g. the text stream",
                )
            elif st.guide not in self.inputs:
                self.error(
                    f"unknown guide input '{st.guide}'{self.suggest(st.guide, list(self.inputs))}",
                    span,
                    f"expected an input: {_one_of(self.inputs)}",
                )
            else:
                guided.setdefault(st.stream, st)
        self.check_guide_cycles(guided)

    def check_guide_cycles(self, guided: dict[str, StackDecl]) -> None:
        """The guide stream runs first; two stacks guiding each other have no order.

        Each stream has at most one guide, so the streams form a functional graph; one walk
        per stream, stopping at any stream already walked, finds every cycle in linear time.
        Each cycle is reported once, starting from its first stream in spec order."""
        order = {stream: k for k, stream in enumerate(guided)}
        done: set[str] = set()
        for start in guided:
            walk: list[str] = []
            on_walk: set[str] = set()
            nxt: str | None = start
            while nxt in guided and nxt not in done and nxt not in on_walk:
                walk.append(nxt)
                on_walk.add(nxt)
                nxt = guided[nxt].guide
            done.update(walk)
            if nxt not in on_walk:
                continue
            cyc = walk[walk.index(nxt) :]
            first = min(range(len(cyc)), key=lambda k: order[cyc[k]])
            path = cyc[first:] + cyc[:first]
            last = guided[path[-1]]
            cycle = " -> ".join([*path, path[0]])
            self.error(
                f"guide cycle: {cycle}",
                last.guide_span,
                "expected the guide stream to be computed first (e.g. the encoder "
                "guides the decoder, not both ways)",
            )

    # -- head, data, sections ------------------------------------------------------------

    def check_head(self) -> None:
        decl = self.spec.head
        if decl is None:
            return
        call = decl.call
        head = self.heads.get(call.name)
        if head is None:
            self.unknown("head", call.name, self.heads, call.span)
            return
        self.validate(head.Options, call.args, call.span, f"{call.name} head option")
        kinds = {d.source.name for d in self.inputs.values()}
        if not kinds <= set(INPUT_KINDS):
            return  # an unknown input kind is reported; it may be the one the head needs
        for kind in getattr(head, "requires", ()):
            if kind not in kinds:
                self.error(
                    f"head '{call.name}' needs {_a(kind)} input, but the spec has none",
                    call.span,
                    f"expected `input NAME = {kind}(...)`",
                )

    def check_data(self) -> None:
        decl = self.spec.data
        if decl is None:
            return
        call = decl.call
        sources = DataSettings.model_fields["source"].annotation.__args__  # type: ignore[union-attr]
        if call.name not in sources:
            self.unknown("data source", call.name, sources, call.span)
            return
        extra = {"source": call.name}
        self.validate(DataSettings, call.args, call.span, f"{call.name} data option", extra)

    def check_sections(self) -> None:
        model = self.spec.model
        model_opts = self._valid_options(ModelSettings, model.options if model else ())
        for sec in self.spec.of_type(SectionDecl):
            schema = SECTIONS[sec.kind]
            if self.validate(schema, sec.options, sec.span, f"{sec.kind} option"):
                self.check_search_width(sec, model_opts)
                self.check_prior(sec)

    def check_prior(self, sec: SectionDecl) -> None:
        """An inline prior names one candidate of every block, in block order."""
        opt = _find(sec.options, "prior")
        if sec.kind != "search" or opt is None or not isinstance(opt.value, ListValue):
            return
        names = [getattr(v, "name", v) for v in opt.value.items]
        blocks = self.spec.blocks()
        where = opt.value_span if opt.value_span.line else opt.span
        if len(names) != len(blocks):
            self.error(
                f"the prior names {len(names)} ops but the spec has {len(blocks)} blocks",
                where,
                "expected one op per block, encoder blocks first",
            )
            return
        for k, (name, block) in enumerate(zip(names, blocks, strict=True)):
            if name not in block.choices:
                self.error(
                    f"prior op {k + 1} is {name!r}, not a candidate of {block.stack} block "
                    f"{block.index}",
                    where,
                    f"expected one of {_one_of(block.choices)}",
                )

    def check_search_width(self, sec: SectionDecl, model_opts: dict[str, Any] | None) -> None:
        """A search-time width must also split into the model's heads."""
        opt = _find(sec.options, "d_model")
        if sec.kind != "search" or opt is None or model_opts is None:
            return
        try:
            ModelSettings.model_validate({**model_opts, "d_model": opt.value}, strict=True)
        except ValidationError as exc:
            msg = _pydantic_message(exc.errors()[0])
            self.error(
                f"search width: {msg}",
                opt.value_span or opt.span,
                "expected a d_model divisible into the model's heads",
            )

    # -- option validation ---------------------------------------------------------------

    def _valid_options(self, schema: type[BaseModel], opts: tuple[Option, ...]) -> dict | None:
        data = options_dict(opts)
        try:
            schema.model_validate(data, strict=True)
        except ValidationError:
            return None
        return data

    def validate(
        self,
        schema: type[BaseModel],
        opts: tuple[Option, ...] | tuple[Arg, ...],
        span: Span,
        what: str,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """Validate options against a schema; every error lands on its option. True if ok."""
        before = len(self.diags)
        self.check_option_keys(opts, what)
        if len(self.diags) > before:
            return False
        try:
            schema.model_validate({**options_dict(opts), **(extra or {})}, strict=True)
        except ValidationError as exc:
            for err in exc.errors():
                self.option_error(schema, opts, span, what, err)
            return False
        return True

    def check_option_keys(self, opts: tuple[Option, ...] | tuple[Arg, ...], what: str) -> None:
        """Positional values that are not flags, and options given twice."""
        seen: dict[str, Span] = {}
        for opt in opts:
            if opt.key is None and not isinstance(opt.value, Ident):
                self.error(
                    f"positional value {_show(opt.value)} needs an option name",
                    opt.span,
                    "expected `name = value` (a bare name is a flag: `lstm` = `lstm = true`)",
                )
                continue
            key = opt.key if opt.key is not None else opt.value.name  # type: ignore[union-attr]
            if key in seen:
                self.error(
                    f"duplicate {what} '{key}' (the first is at {_at(seen[key])})",
                    opt.span,
                    "expected each option once",
                )
            seen[key] = opt.span

    def option_error(
        self,
        schema: type[BaseModel],
        opts: tuple[Any, ...],
        span: Span,
        what: str,
        err: dict[str, Any],
    ) -> None:
        loc = err.get("loc", ())
        key = str(loc[0]) if loc else None
        related = _RELATED.get(schema) or getattr(schema, "related", ())
        opt = _find(opts, key) if key else _find_any(opts, related)
        if err["type"] == "extra_forbidden" and key is not None:
            fields = [f for f in schema.model_fields if f not in ("kind", "source")]
            self.error(
                f"unknown {what} '{key}'{self.suggest(key, fields)}",
                opt.span if opt else span,
                f"expected one of: {', '.join(fields)}",
            )
            return
        where = (opt.value_span if opt and opt.value_span.line else opt.span) if opt else span
        message = _pydantic_message(err)
        field = schema.model_fields.get(key) if key else None
        if err["type"].endswith("_type") and field is not None:
            message = f"{_show(err.get('input'))} should be {describe_type(field.annotation)}"
        self.error(
            f"invalid '{key}': {message}" if key else message, where, _expected_for(schema, key)
        )


# Which options a whole-model validation error is about (for its position); a schema may
# also say so itself (`related`, and `hint` for what was expected: lang/bmnas_settings.py).
_RELATED: dict[type[BaseModel], tuple[str, ...]] = {
    ModelSettings: ("heads", "head_dim", "d_model"),
}


_WHOLE_HINTS: dict[type[BaseModel], str] = {
    ModelSettings: "expected d_model = heads * head_dim (head_dim defaults to 64)",
    DataSettings: 'expected `data h5(root = "DIR")` or `data shapes(...)`',
}


def _pydantic_message(err: dict[str, Any]) -> str:
    """A pydantic error as a short lower-case phrase with the offending value."""
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if err["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if err["type"] in bounds:
        sym, name = bounds[err["type"]]
        return f"{_show(value)} is out of range (must be {sym} {ctx[name]})"
    if err["type"] == "literal_error":
        return f"{_show(value)} is not one of {ctx.get('expected')}"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.replace("Input should be", "should be").replace("Value error, ", "")
    return f"{_show(value)} {msg[0].lower()}{msg[1:]}" if value is not None else msg


def validation_message(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """A pydantic ValidationError in the checker's words, one part per error:
    `--epochs: -1 is out of range (must be >= 0)`; `names` maps a field to what the user
    typed for it (a flag), else the field is quoted."""
    parts = []
    for err in exc.errors():
        loc = err.get("loc", ())
        key = str(loc[0]) if loc else None
        name = (names or {}).get(key, f"'{key}'") if key else ""
        message = _pydantic_message(err)
        parts.append(f"{name}: {message}" if name else message)
    return "; ".join(parts)


def _expected_for(schema: type[BaseModel], key: str | None) -> str:
    field = schema.model_fields.get(key) if key else None
    if field is None:
        hint = _WHOLE_HINTS.get(schema) or getattr(schema, "hint", None)
        return hint or f"expected valid {schema.__name__} options"
    desc = f" ({field.description})" if field.description else ""
    return f"expected {key} = {describe_type(field.annotation)}{desc}"


def describe_type(annotation: Any) -> str:
    """A schema field's type in the spec's own words (`an integer`, `'bce' or 'ce'`)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return _one_of(str(a) for a in args)
    if origin in (Union, UnionType):
        return " or ".join(describe_type(a) for a in args if a is not type(None))
    if origin is tuple:
        if args == (int, int):
            return "a ratio like 4:1"
        if len(args) == 2 and args[1] is not Ellipsis:
            return "a list of two names like [a, b]"
        return "a list like [10, 12]"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if annotation in names:
        return names[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        kinds = get_args(annotation.model_fields["kind"].annotation)
        return ", ".join(f"{k}(dim)" for k in kinds) + " or a width"
    return str(annotation)


def _show(value: Any) -> str:
    """A value as a message quotes it, cut to `MAX_SHOWN_VALUE` characters."""
    if isinstance(value, dict) and "call" in value:
        text = f"{value['call']}(...)"
    elif isinstance(value, str):
        text = repr(value)
    elif hasattr(value, "name") and not isinstance(value, type):
        text = str(value.name)
    else:
        text = repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 1] + "…"


def _find(opts: Iterable[Any], key: str | None) -> Any:
    """The last option with this key (the one `options_dict` keeps)."""
    found = None
    for opt in opts:
        name = opt.key if opt.key is not None else getattr(opt.value, "name", None)
        if name == key:
            found = opt
    return found


def _find_any(opts: tuple[Any, ...], keys: tuple[str, ...]) -> Any:
    return next((o for k in keys if (o := _find(opts, k)) is not None), None)


def _singleton_kind(stmt: Any) -> str | None:
    if isinstance(stmt, ModelDecl):
        return "model"
    if isinstance(stmt, HeadDecl):
        return "head"
    if isinstance(stmt, DataDecl):
        return "data"
    if isinstance(stmt, SectionDecl):
        return stmt.kind
    return None


def _end_span(spec: Spec) -> Span:
    """Where a missing statement would go: just after the last statement."""
    if not spec.statements:
        return Span(line=1, column=1, end_line=1, end_column=2)
    last = spec.statements[-1].span
    return Span(
        line=last.end_line,
        column=last.end_column,
        end_line=last.end_line,
        end_column=last.end_column + 1,
    )


def _count_span(item: Repeat) -> Span:
    """The `n` of `x * n`: the last token of the repeat."""
    s = item.span
    width = len(str(item.count))
    if not s.line:
        return s
    return Span(
        line=s.end_line, column=s.end_column - width, end_line=s.end_line, end_column=s.end_column
    )


def count_blocks(items: tuple[Item, ...]) -> int:
    """The number of blocks a sequence expands to, without expanding it."""
    total = 0
    for item in items:
        if isinstance(item, (Ref, Choice)):
            total += 1
        elif isinstance(item, Repeat):
            total += max(item.count, 0) * count_blocks(item.body)
        else:
            total += count_blocks(item.body)
    return total


def cyclic_pools(pools: dict[str, PoolDecl]) -> set[str]:
    """The pools that include themselves, directly or through other pools: those on a cycle
    of the pool graph (Tarjan's strongly connected components, iteratively, in linear time;
    a chain of thousands of pools neither recurses nor is walked once per pool)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: set[str] = set()
    graph = {name: [r.name for r in d.members if r.name in pools] for name, d in pools.items()}
    for root in pools:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            name, i = work.pop()
            if i == 0:
                index[name] = low[name] = len(index)
                stack.append(name)
                on_stack.add(name)
            members = graph[name]
            if i < len(members):
                work.append((name, i + 1))
                nxt = members[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[name] = min(low[name], index[nxt])
                continue
            if low[name] == index[name]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == name:
                        break
                if len(component) > 1 or name in members:
                    out.update(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[name])
    return out


def check(spec: Spec, catalog: Catalog, text: str | None = None) -> None:
    """Check a parsed spec; raise one SpecError with every problem, sorted by position.

    Args:
        spec: the parsed spec (`mmnasdsl.lang.parse.parse`).
        catalog: the ops and heads it may name (`mmnasdsl.catalog()`).
        text: its source text, to show the offending lines; optional.

    Raises:
        SpecError: when anything is wrong.
    """
    diags = diagnostics(spec, catalog)
    if diags:
        raise SpecError(diags, source=spec.source, text=text)


def diagnostics(spec: Spec, catalog: Catalog) -> list[Diagnostic]:
    """Every problem of a spec (by its kind's checker), by position; empty for a good spec."""
    from mmnasdsl.lang.kinds import get_kind

    return get_kind(spec.kind).checker(spec, catalog).run()
