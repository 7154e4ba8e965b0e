"""The spec AST: immutable pydantic models of a parsed `.mmnas` file, with source spans.

Every node keeps the span of the text it came from, so the checker can point at it.
Spans never take part in equality: two specs are equal when they say the same thing,
which is what the parse/format round trip promises (`parse(format(s)) == s`).

Typed, defaulted views of the option lists (`ModelSettings`, `WordsInput`, ...) live in
`mmnasdsl.lang.settings`; this module is only the shape of the text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class Span(BaseModel):
    """1-based line/column of the first character and of the character after the last."""

    model_config = ConfigDict(frozen=True)
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0


NO_SPAN = Span()
DEFAULT_KIND = "mmnas"  # the space kind of a spec without a `space` statement


class Node(BaseModel):
    """Base of every AST node: frozen, with a span that equality ignores."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    span: Span = Field(default=NO_SPAN, repr=False)

    def _key(self) -> tuple[Any, ...]:
        # Every Span-valued field (`span`, `guide_span`, `value_span`) is position, not meaning.
        fields = type(self).model_fields
        meaning = (getattr(self, n) for n in fields if n != "span" and not n.endswith("_span"))
        return (type(self).__name__, *meaning)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


# ----------------------------------------------------------------------------- values


class Ident(Node):
    """A bare word used as a value: `loss = bce`, `relations = box4`, `true`."""

    kind: Literal["ident"] = "ident"
    name: str


class Ratio(Node):
    """`4:1`, e.g. the D_m:D_a split of the search."""

    kind: Literal["ratio"] = "ratio"
    left: int
    right: int


class Mult(Node):
    """`4x`: a width multiplier (the FFN's hidden size is `ffn` times d_model)."""

    kind: Literal["mult"] = "mult"
    factor: float


class ListValue(Node):
    """`[10, 12]`."""

    kind: Literal["list"] = "list"
    items: tuple[Value, ...] = ()


class Arg(Node):
    """One argument of a call: `key = value`, or a positional value when `key` is None."""

    key: str | None = None
    value: Value
    value_span: Span = Field(default=NO_SPAN, repr=False)


class Call(Node):
    """`name(arg, key = value, ...)`: inputs, heads, data sources and values like `glove(300)`."""

    kind: Literal["call"] = "call"
    name: str
    args: tuple[Arg, ...] = ()
    parens: bool = True  # False for a bare `head vqa`


Value = Union[int, float, str, Ident, Ratio, Mult, ListValue, Call]  # noqa: UP007


class Option(Node):
    """`key = value` inside a `{ ... }` section."""

    key: str
    value: Value
    value_span: Span = Field(default=NO_SPAN, repr=False)


# -------------------------------------------------------------------------- sequences


class Ref(Node):
    """An op or pool name: one block (a pool makes the block searchable over the pool)."""

    kind: Literal["ref"] = "ref"
    name: str


class Choice(Node):
    """`A | B | C`: one searchable block with these candidates."""

    kind: Literal["choice"] = "choice"
    options: tuple[Ref, ...]


class Repeat(Node):
    """`item * n` or `( items ) * n`: the body repeated n times."""

    kind: Literal["repeat"] = "repeat"
    body: tuple[Item, ...]
    count: int


class Group(Node):
    """`( items )` without a count: only grouping, kept so formatting round-trips."""

    kind: Literal["group"] = "group"
    body: tuple[Item, ...]


Item = Union[Ref, Choice, Repeat, Group]  # noqa: UP007


# ------------------------------------------------------------------------- statements


class SpaceDecl(Node):
    """`space NAME`: the kind of search space the file describes (default `mmnas`)."""

    name: str


class ModelDecl(Node):
    """`model NAME { options }`: width, heads, dropout and the other network settings."""

    name: str
    options: tuple[Option, ...] = ()


class InputDecl(Node):
    """`input NAME = words(...)` or `objects(...)`."""

    name: str
    source: Call


class PoolDecl(Node):
    """`pool NAME = A | B`: a named set of candidate ops."""

    name: str
    members: tuple[Ref, ...]


class StackDecl(Node):
    """`encoder|decoder STREAM (guide = OTHER) = items`: the blocks run over one input."""

    kind: Literal["encoder", "decoder"]
    stream: str
    stream_span: Span = Field(default=NO_SPAN, repr=False)
    guide: str | None = None
    guide_span: Span = Field(default=NO_SPAN, repr=False)
    body: tuple[Item, ...]


class HeadDecl(Node):
    """`head TASK(options)`: the task head (see `mmnasdsl.heads`)."""

    call: Call


class DataDecl(Node):
    """`data SOURCE(options)`: where `search`/`train` read their data by default."""

    call: Call


class SectionDecl(Node):
    """`search { ... }` or `train { ... }`."""

    kind: Literal["search", "train"]
    options: tuple[Option, ...] = ()


Statement = Union[  # noqa: UP007
    SpaceDecl, ModelDecl, InputDecl, PoolDecl, StackDecl, HeadDecl, DataDecl, SectionDecl
]


class Block(BaseModel):
    """One block of a stack after expansion: its candidate ops (one op = a fixed block)."""

    model_config = ConfigDict(frozen=True)
    stack: Literal["encoder", "decoder"]
    stream: str
    index: int
    choices: tuple[str, ...]
    guide: str | None = None
    span: Span = Field(default=NO_SPAN, repr=False)

    @property
    def searchable(self) -> bool:
        return len(self.choices) > 1


class Comment(Node):
    """A `# ...` comment and its position; kept so `format_spec` can put it back."""

    text: str


class Spec(Node):
    """A whole `.mmnas` file: statements in source order, plus the file name for errors.

    `comments` are the file's comments with their spans; like the file name they are not
    part of what a spec says, so equality ignores them.
    """

    statements: tuple[Node, ...] = ()  # MMnas: `Statement`s; other space kinds add their own
    source: str = Field(default="<string>", repr=False)
    comments: tuple[Comment, ...] = Field(default=(), repr=False)

    def _key(self) -> tuple[Any, ...]:  # the file name and comments are not what a spec says
        return ("Spec", self.statements)

    # -- lookups (first match; the checker reports duplicates) -------------------------

    @property
    def kind(self) -> str:
        """The kind of search space (`space NAME`; `mmnas` when the file does not say)."""
        decl = next(self.of_type(SpaceDecl), None)
        return decl.name if decl is not None else DEFAULT_KIND

    def of_type(self, cls: type[Node]) -> Iterator[Any]:
        return (s for s in self.statements if isinstance(s, cls))

    @property
    def model(self) -> ModelDecl | None:
        return next(self.of_type(ModelDecl), None)

    @property
    def inputs(self) -> dict[str, InputDecl]:
        return {d.name: d for d in reversed(list(self.of_type(InputDecl)))}

    @property
    def pools(self) -> dict[str, PoolDecl]:
        return {d.name: d for d in reversed(list(self.of_type(PoolDecl)))}

    @property
    def stacks(self) -> list[StackDecl]:
        return list(self.of_type(StackDecl))

    @property
    def head(self) -> HeadDecl | None:
        return next(self.of_type(HeadDecl), None)

    @property
    def task(self) -> str | None:
        """The task its head names (`head vqa(...)` -> "vqa"), or None without a head."""
        head = self.head
        return head.call.name if head is not None else None

    @property
    def data(self) -> DataDecl | None:
        return next(self.of_type(DataDecl), None)

    def section(self, kind: str) -> SectionDecl | None:
        return next((s for s in self.of_type(SectionDecl) if s.kind == kind), None)

    def stack(self, kind: str) -> StackDecl | None:
        return next((s for s in self.stacks if s.kind == kind), None)

    # -- expansion -----------------------------------------------------------------------

    def blocks(self, stack: StackDecl | None = None) -> list[Block]:
        """Every block of one stack (or of all stacks, encoders first), pools expanded."""
        stacks = [stack] if stack is not None else self.stacks
        out: list[Block] = []
        pools, memo = self.pools, {}
        for st in stacks:
            for index, (choices, span) in enumerate(_expand(st.body, pools, memo)):
                out.append(
                    Block(
                        stack=st.kind,
                        stream=st.stream,
                        index=index,
                        choices=choices,
                        guide=st.guide,
                        span=span,
                    )
                )
        return out

    @property
    def is_concrete(self) -> bool:
        """True when every block is one op: the spec describes one network, not a space."""
        return all(not b.searchable for b in self.blocks())

    def search_space_size(self) -> int:
        """The number of architectures: the product of the candidates of every block."""
        size = 1
        for block in self.blocks():
            size *= len(block.choices)
        return size

    def size_formula(self) -> str:
        """`2^12*4^18 = 281474976710656`: the product of the block choice counts, exactly."""
        counts = Counter(len(b.choices) for b in self.blocks() if b.searchable)
        if not counts:
            return "1 (concrete)"
        factors = [f"{k}^{n}" if n > 1 else str(k) for k, n in sorted(counts.items())]
        size, formula = self.search_space_size(), "*".join(factors)
        return str(size) if formula == str(size) else f"{formula} = {size}"

    def outline(self) -> str:
        """`30 blocks (30 searchable)`: what `check` says the spec holds."""
        blocks = self.blocks()
        return f"{len(blocks)} blocks ({sum(b.searchable for b in blocks)} searchable)"

    def replace_stacks(self, ops: dict[str, list[str]]) -> Spec:
        """A copy whose stacks are the given op lists (by stack kind): the searcher's output.

        The file's header comments (those before the first statement) describe the search
        space, not the one network chosen from it, so the copy leaves them out; the caller
        writes its own header (`format_spec(..., header=...)`).
        """
        stmts = []
        for s in self.statements:
            if isinstance(s, StackDecl) and s.kind in ops:
                s = s.model_copy(update={"body": compress(ops[s.kind])})
            stmts.append(s)
        first = min((s.span.line for s in self.statements if s.span.line), default=0)
        comments = tuple(c for c in self.comments if c.span.line >= first)
        return self.model_copy(update={"statements": tuple(stmts), "comments": comments})


@dataclass(frozen=True)
class StackRun:
    """One stack as run: its stream, its guide stream, and its blocks' indices in block order."""

    stream: str
    guide: str | None
    blocks: tuple[int, ...]


def stack_order(spec: Spec) -> list[StackRun] | None:
    """The stacks in an order that runs every stack over a guide stream before its users,
    or None when the guides form a cycle (the checker reports it).

    Stable: among ready stacks, spec order (encoders before decoders in the paper's specs).
    """
    runs, start = [], 0
    for st in spec.stacks:
        n = len(spec.blocks(st))
        runs.append(StackRun(st.stream, st.guide, tuple(range(start, start + n))))
        start += n
    ordered: list[StackRun] = []
    while runs:
        ready = [r for r in runs if not any(o.stream == r.guide for o in runs if o is not r)]
        if not ready:
            return None
        ordered.append(ready[0])
        runs.remove(ready[0])
    return ordered


def pool_members(
    name: str, pools: dict[str, PoolDecl], memo: dict[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """The ops a name stands for: itself if it is no pool, else its members' ops in order of
    first appearance. A pool met again on its own path (a cycle, which the checker reports)
    stands for its name.

    Iterative with a memo of finished pools, so a chain of thousands of pools neither
    recurses nor is walked once per block.
    """
    if name not in pools:
        return (name,)
    if name in memo:
        return memo[name]
    on_path = {name}
    stack: list[tuple[str, int, list[str]]] = [(name, 0, [])]
    while stack:
        pool, i, ops = stack[-1]
        members = pools[pool].members
        if i == len(members):
            stack.pop()
            on_path.discard(pool)
            memo[pool] = tuple(ops)
            if stack:
                _add_new(stack[-1][2], memo[pool])
            continue
        stack[-1] = (pool, i + 1, ops)
        ref = members[i].name
        if ref in pools and ref not in memo and ref not in on_path:
            on_path.add(ref)
            stack.append((ref, 0, []))
        else:
            _add_new(ops, memo.get(ref, (ref,)))
    return memo[name]


def _add_new(ops: list[str], more: tuple[str, ...]) -> None:
    for op in more:
        if op not in ops:
            ops.append(op)


def _expand(
    items: tuple[Item, ...],
    pools: dict[str, PoolDecl],
    memo: dict[str, tuple[str, ...]] | None = None,
) -> list[tuple[tuple[str, ...], Span]]:
    """(choices, span) per block of a sequence. Recursion is one frame per nesting level,
    which `lang.limits.MAX_DEPTH` bounds."""
    memo = {} if memo is None else memo
    out: list[tuple[tuple[str, ...], Span]] = []
    for item in items:
        if isinstance(item, Ref):
            out.append((pool_members(item.name, pools, memo), item.span))
        elif isinstance(item, Choice):
            ops: list[str] = []
            for ref in item.options:
                _add_new(ops, pool_members(ref.name, pools, memo))
            out.append((tuple(ops), item.span))
        elif isinstance(item, Repeat):
            out += _expand(item.body, pools, memo) * max(item.count, 0)
        else:
            out += _expand(item.body, pools, memo)
    return out


def compress(ops: list[str]) -> tuple[Item, ...]:
    """Concrete op names -> items, folding a run of a repeated period into `( ... ) * n`.

    Finds, greedily from the left, the period p (1..8) whose repetition covers the most
    blocks, so `SA FFN SA FFN SA FFN` becomes `(SA FFN) * 3`; other runs stay as names.
    """
    items: list[Item] = []
    i = 0
    while i < len(ops):
        best_p, best_n = 1, 1
        for p in range(1, 9):
            n = 1
            period = ops[i : i + p]
            while i + (n + 1) * p <= len(ops) and ops[i + n * p : i + (n + 1) * p] == period:
                n += 1
            if n > 1 and n * p > best_n * best_p:
                best_p, best_n = p, n
        if best_n > 1 and not (best_p == 1 and best_n == 2):
            body = tuple(Ref(name=o) for o in ops[i : i + best_p])
            items.append(Repeat(body=body, count=best_n))
            i += best_p * best_n
        else:
            items.append(Ref(name=ops[i]))
            i += 1
    return tuple(items)


for _cls in (ListValue, Arg, Call, Option, Repeat, Group, StackDecl, Spec):
    _cls.model_rebuild()
