"""The built-in space kind `mmnas` (MMnas, Yu et al. ACM MM 2020): encoder/decoder stacks of
blocks over two input streams, each block one op or a choice among ops."""

from mmnasdsl.lang.check import Checker
from mmnasdsl.lang.kinds import SpaceKind, register_kind
from mmnasdsl.lang.parse import MMnasTransformer

MMNAS = register_kind(
    SpaceKind(
        name="mmnas",
        grammar="mmnas.lark",
        transformer=MMnasTransformer,
        checker=Checker,
        doc="MMnas: encoder/decoder stacks of SA, GA, RSA, FFN blocks, and a task head",
    )
)
