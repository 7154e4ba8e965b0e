"""Compile: Spec -> networkx graph (sizes, parameters, FLOPs) and torch modules.

`build.build_model` makes a concrete spec's `Network` or a search space's `Supernet`
(whose blocks run whatever route a searcher sets); `graph.build_graph` the graph that
`info` and `render` read.
"""
