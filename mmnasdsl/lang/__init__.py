"""The language: text -> Spec -> checked Spec -> text (grammar, AST, settings, errors).

It imports lark and pydantic only, never torch; the ops and heads a spec may name reach
the checker as a `Catalog` (`mmnasdsl.catalog()`).
"""
