"""Typed, defaulted views of a spec's options: one pydantic schema per section.

These schemas are the single table of what each section accepts: the checker validates
options against them (unknown keys, types, ranges), the docs list them, and the compiler,
data and search code read `model_settings(spec)` & co. instead of raw option lists.
Head options live with their head (`mmnasdsl.heads`), schema and all.

Every number has a finite range: floats refuse NaN and infinity, and sizes, counts and
epochs have upper bounds far above any real run, so a typo like `batch = 10000000000000`
or `lr = 1e999` is an error at its option rather than an overflow deep inside torch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.spec import (
    Arg,
    Call,
    Ident,
    InputDecl,
    ListValue,
    Mult,
    Option,
    Ratio,
    Spec,
    Value,
)

DEFAULT_VOCAB = 20000  # word-embedding rows when the data is not known (VQA-v2 has ~20k)

# Upper bounds of the option ranges (and of the matching command-line flags).
MAX_WIDTH = 65_536  # feature, fused and relation widths
MAX_EPOCHS = 100_000  # epochs, warm-up epochs, patience, decay epochs
MAX_BATCH = 65_536  # samples per step
MAX_SEED = 2**32 - 1
MAX_SCENES = 1_000_000  # shapes scenes in the train split
MAX_LR = 1.0  # Adam's step size for the weights
MAX_THETA_LR = 100.0
MAX_CLIP = 1e6
MAX_PART = 1_000_000  # each side of the search split
MAX_DECAYS = 64  # entries of decay_at
MAX_ROOT = 4096  # characters of a data root


class Settings(BaseModel):
    """Base of the option schemas: frozen, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelSettings(Settings):
    """`model NAME { ... }`: the backbone's sizes (paper §3, REFERENCE.md "Ops")."""

    d_model: int = Field(512, ge=8, le=8192, description="model width d")
    heads: int | None = Field(
        None, ge=1, le=128, description="attention heads (default d/head_dim)"
    )
    head_dim: int | None = Field(None, ge=1, le=1024, description="width per head (default 64)")
    ffn: float = Field(4.0, gt=0, le=64, description="FFN hidden width as a multiple of d")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout in every op and the heads")
    fused: int | None = Field(None, ge=1, le=MAX_WIDTH, description="fused width d_z (default 2d)")
    bias: bool = Field(False, description="bias on the attention projections (reference: none)")
    norm: Literal["reference", "standard"] = Field(
        "reference",
        description="LayerNorm: the reference's a·(x−mean)/(std+1e-6)+b with the unbiased std, "
        "or torch's nn.LayerNorm (biased variance, eps 1e-5 inside the square root)",
    )
    relation_dim: int = Field(
        64, ge=1, le=4096, description="hidden width of the shared relation MLP"
    )
    relation_init: Literal["neutral", "reference"] = Field(
        "neutral",
        description="RSA's per-head relation layer at init: neutral (bias 0, RSA starts as SA) "
        "or the reference's torch default",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSettings:
        if self.heads is not None and self.head_dim is not None:
            if self.heads * self.head_dim != self.d_model:
                raise ValueError(
                    f"heads * head_dim = {self.heads * self.head_dim} "
                    f"is not d_model = {self.d_model}"
                )
        elif self.d_model % (self.heads or self.head_dim or 64):
            what = f"heads = {self.heads}" if self.heads else f"head_dim = {self.head_dim or 64}"
            raise ValueError(f"d_model = {self.d_model} is not divisible by {what}")
        return self

    @property
    def n_heads(self) -> int:
        return self.heads or self.d_model // (self.head_dim or 64)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_fused(self) -> int:
        return self.fused or 2 * self.d_model

    @property
    def d_ffn(self) -> int:
        return round(self.ffn * self.d_model)


class Embedding(Settings):
    """`embed = glove(300)` (GloVe-initialised when vectors are given) or `learned(300)`."""

    kind: Literal["glove", "learned"] = "glove"
    dim: int = Field(300, ge=1, le=4096)


class WordsInput(Settings):
    """`input NAME = words(...)`: token ids -> embedding -> (LSTM) -> X."""

    kind: Literal["words"] = "words"
    max_len: int = Field(14, ge=1, le=1024, description="tokens kept per sentence")
    embed: Embedding = Field(
        default_factory=Embedding,
        description="token embedding; glove is initialised from vectors when given",
    )
    lstm: bool = Field(True, description="a one-layer LSTM after the embedding")

    @field_validator("embed", mode="before")
    @classmethod
    def _embed(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return {"kind": "learned", "dim": v}
        if isinstance(v, str):  # `embed = glove`: the kind at its default width
            return {"kind": v}
        if isinstance(v, dict) and "call" in v:
            args = v["args"]
            if len(args) > 1:
                raise ValueError(f"{v['call']}(...) takes one argument, the embedding width")
            return {"kind": v["call"], **({"dim": args[0]} if args else {})}
        return v


class ObjectsInput(Settings):
    """`input NAME = objects(...)`: region features + boxes -> Linear -> Y (and R)."""

    kind: Literal["objects"] = "objects"
    max: int = Field(100, ge=1, le=4096, description="objects kept per image")
    dim: int = Field(2048, ge=1, le=MAX_WIDTH, description="feature width per object")
    relations: Literal["box4", "none"] = Field("box4", description="relation features for RSA")
    box_convention: Literal["pixel", "continuous"] = Field(
        "pixel",
        description="how the relation features measure a box: pixel (w = x2 − x1 + 1, "
        "the reference's loader) or continuous (w = x2 − x1)",
    )


InputSettings = WordsInput | ObjectsInput
INPUT_KINDS: dict[str, type[Settings]] = {"words": WordsInput, "objects": ObjectsInput}


class RunCompute(Settings):
    """How a run's steps compute, shared by `search { }` and `train { }`."""

    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="arithmetic of the forward: bf16 (CPU or CUDA) or fp16 (CUDA, with a "
        "gradient scaler) run the matmuls under torch.autocast; weights stay fp32",
    )
    checkpoint: bool = Field(
        False,
        description="per-block activation checkpointing: keep only each block's input and "
        "recompute the rest in the backward (less memory, one more forward per step)",
    )


class SearchSettings(RunCompute):
    """`search { ... }`: Algorithm 1's schedule (paper §4; REFERENCE.md "Search")."""

    warmup: int = Field(
        50, ge=0, le=MAX_EPOCHS, description="T_w: epochs of uniformly sampled W updates"
    )
    epochs: int = Field(
        20, ge=0, le=MAX_EPOCHS, description="T_j: epochs of alternating W / θ updates"
    )
    update_ratio: int = Field(5, ge=1, le=MAX_EPOCHS, description="u: W updates per θ update")
    split: tuple[int, int] = Field((4, 1), description="|D_m| : |D_a|")
    batch: int = Field(64, ge=1, le=MAX_BATCH, description="samples per W or θ step")
    lr: float = Field(4e-4, gt=0, le=MAX_LR, description="base lr of W (Adam)")
    theta_lr: float = Field(
        0.1, gt=0, le=MAX_THETA_LR, description="lr of the architecture logits θ (Adam)"
    )
    patience: int = Field(
        5, ge=1, le=MAX_EPOCHS, description="early stop after this many epochs without change"
    )
    d_model: int | None = Field(
        None, ge=8, le=8192, description="width during search (reference: 256)"
    )
    estimator: Literal["two", "full"] = Field(
        "two",
        description="θ estimator: ProxylessNAS gates over two sampled candidates, or over "
        "all of them (the reference's)",
    )
    clip: float = Field(1.0, gt=0, le=MAX_CLIP, description="gradient-norm clip of W")
    prior: str | tuple[str, ...] | None = Field(
        None,
        description="a concrete net to start θ from: a .mmnas file (relative to this spec), "
        "or its ops in block order like [SA, FFN, GA]; W paths are then drawn from "
        "softmax(θ) from the first step (the reference starts from MCAN this way)",
    )
    prior_strength: float = Field(
        1.0, ge=0, le=100, description="θ starts at +s for the prior's op, -s for the others"
    )
    temperature: float = Field(
        1.0, gt=0, le=100, description="τ of softmax(θ / τ) for sampling, at the first search epoch"
    )
    temperature_end: float | None = Field(
        None, gt=0, le=100, description="τ at the last search epoch, geometric in between"
    )
    alternate: Literal["steps", "epochs"] = Field(
        "steps",
        description="steps: a θ step after every update_ratio W steps (MMnas); epochs: a pass "
        "of W steps over D_m, then a pass of θ steps over D_a, every epoch (BM-NAS)",
    )
    searcher: str | None = Field(
        None,
        max_length=64,
        description="the searcher `mmnasdsl search` runs without --searcher (default oneshot)",
    )
    keep: Literal["last", "best"] = Field(
        "last",
        description="the answer written: the searcher's current one, or the one of the search "
        "epoch with the best D_a metric (BM-NAS)",
    )

    @field_validator("split", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        ints = isinstance(v, tuple) and all(isinstance(x, int) for x in v)
        if ints and (len(v) != 2 or min(v) < 1):
            raise ValueError("split needs two positive parts, like 4:1")
        if ints and max(v) > MAX_PART:
            raise ValueError(f"split parts must be at most {MAX_PART:,}, like 4:1")
        return v


class TrainSettings(RunCompute):
    """`train { ... }`: the final training schedule (REFERENCE.md "Final training")."""

    epochs: int = Field(13, ge=1, le=MAX_EPOCHS, description="training epochs")
    batch: int = Field(64, ge=1, le=MAX_BATCH, description="samples per step")
    lr: float = Field(1.2e-4, gt=0, le=MAX_LR, description="base learning rate (Adam 0.9/0.98)")
    warmup: int = Field(
        3, ge=0, le=MAX_EPOCHS, description="epochs of linear lr warm-up (1/4, 2/4, 3/4)"
    )
    decay_at: tuple[Annotated[int, Field(ge=1, le=MAX_EPOCHS)], ...] = Field(
        (10, 12), max_length=MAX_DECAYS, description="epochs after which lr x= decay"
    )
    decay: float = Field(0.2, gt=0, le=1, description="lr factor at each decay_at epoch")
    clip: float = Field(1.0, gt=0, le=MAX_CLIP, description="gradient-norm clip")


class DataSettings(Settings):
    """`data shapes(...)` (the built-in world), `data planted(task = rsa|ga, ...)` (the
    built-in worlds that plant one op, docs/planted.md) or `data h5(root = "DIR")`."""

    source: Literal["shapes", "planted", "h5"] = "shapes"
    root: str | None = Field(
        None, max_length=MAX_ROOT, description="folder with train/val/test .h5 stores"
    )
    task: Literal["rsa", "ga"] | None = Field(
        None, description="planted: the world, and the op it plants (RSA or GA)"
    )
    scenes: int = Field(
        2000, ge=10, le=MAX_SCENES, description="shapes, planted: scenes in the train split"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="shapes, planted: generator seed")

    @field_validator("root")
    @classmethod
    def _root(cls, v: str | None) -> str | None:
        if v is not None and any(ord(c) < 32 for c in v):
            raise ValueError("a folder name holds no control characters (\\n, \\t, NUL)")
        return v

    @model_validator(mode="after")
    def _source_options(self) -> DataSettings:
        if self.source == "h5" and not self.root:
            raise ValueError('h5 data needs root = "DIR", the folder of its .h5 stores')
        if self.source == "planted" and self.task is None:
            raise ValueError("planted data needs task = rsa or task = ga")
        if self.source != "planted" and self.task is not None:
            raise ValueError(f"task is an option of planted data, not of {self.source}")
        return self


# ------------------------------------------------------------- option values -> python


def to_python(value: Value) -> Any:
    """An AST value as the plain Python a schema validates: `4x` -> 4.0, `4:1` -> (4, 1)."""
    if isinstance(value, Ident):
        return {"true": True, "false": False}.get(value.name, value.name)
    if isinstance(value, Mult):
        return value.factor
    if isinstance(value, Ratio):
        return (value.left, value.right)
    if isinstance(value, ListValue):
        return tuple(to_python(v) for v in value.items)
    if isinstance(value, Call):
        positional = [to_python(a.value) for a in value.args if a.key is None]
        return {
            "call": value.name,
            "args": positional,
            **{a.key: to_python(a.value) for a in value.args if a.key is not None},
        }
    return value


def options_dict(options: tuple[Option, ...] | tuple[Arg, ...]) -> dict[str, Any]:
    """Keyword options as a dict; a bare positional name `lstm` means `lstm = true`."""
    out: dict[str, Any] = {}
    for opt in options:
        key = opt.key
        if key is None:
            if isinstance(opt.value, Ident):
                out[opt.value.name] = True
            continue
        out[key] = to_python(opt.value)
    return out


# -------------------------------------------------------------- typed views of a spec


def model_settings(spec: Spec, **overrides: Any) -> ModelSettings:
    decl = spec.model
    return ModelSettings(**{**(options_dict(decl.options) if decl else {}), **overrides})


def input_settings(spec: Spec, name: str) -> InputSettings:
    call = spec.inputs[name].source
    return INPUT_KINDS[call.name](**options_dict(call.args))  # type: ignore[return-value]


def scaled_settings(spec: Spec, d_model: int | None = None) -> ModelSettings:
    """The spec's model settings, at width `d_model` when given.

    The override (the search width; the reference searches at d = 256 and trains at 512)
    keeps the spec's head width d_h fixed, so heads = d / d_h (8 at 512, 4 at 256 with
    d_h = 64, as REFERENCE.md). When d_h does not divide the new width (tiny test widths),
    the spec's head count is kept instead. An explicit `fused` width scales with d; the FFN
    multiple, dropout, norm, bias and relation width are unchanged.
    """
    base = model_settings(spec)
    if d_model is None or d_model == base.d_model:
        return base
    fused = None if base.fused is None else max(1, base.fused * d_model // base.d_model)
    if d_model % base.d_head == 0:
        heads = d_model // base.d_head
    elif d_model % base.n_heads == 0:
        heads = base.n_heads
    else:
        raise UsageError(
            f"d_model = {d_model} is divisible by neither the head width "
            f"{base.d_head} nor the head count {base.n_heads}"
        )
    return model_settings(spec, d_model=d_model, heads=heads, head_dim=None, fused=fused)


def spec_inputs(spec: Spec) -> dict[str, InputSettings]:
    """Input name -> typed settings, in source order."""
    names = dict.fromkeys(d.name for d in spec.of_type(InputDecl))
    return {name: input_settings(spec, name) for name in names}


def search_settings(spec: Spec, **overrides: Any) -> SearchSettings:
    sec = spec.section("search")
    return SearchSettings(**{**(options_dict(sec.options) if sec else {}), **overrides})


def train_settings(spec: Spec, **overrides: Any) -> TrainSettings:
    sec = spec.section("train")
    return TrainSettings(**{**(options_dict(sec.options) if sec else {}), **overrides})


def data_settings(spec: Spec) -> DataSettings:
    decl = spec.data
    if decl is None:
        return DataSettings()
    return DataSettings(source=decl.call.name, **options_dict(decl.call.args))  # type: ignore[arg-type]


def head_options(spec: Spec) -> dict[str, Any]:
    """The head's options as plain Python; `mmnasdsl.heads` validates them per task."""
    return options_dict(spec.head.call.args) if spec.head else {}


def words_stream(spec: Spec) -> str | None:
    """The name of the (first) words input."""
    return next((n for n, d in spec.inputs.items() if d.source.name == "words"), None)


def objects_stream(spec: Spec) -> str | None:
    """The name of the (first) objects input."""
    return next((n for n, d in spec.inputs.items() if d.source.name == "objects"), None)
