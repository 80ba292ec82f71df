"""Re-running only what a one-layer change touches: the greedy search's forward passes, made cheaper.

Every move the greedy walk scores (``mpq.search.space``) changes one layer's bits, so on a fixed batch the
activations upstream of that layer are exactly those of the configuration it moves from. ``GraphCache``
traces the supernet's model once (``torch.fx``, with the weight-coupled layers and switchable BNs as
leaves, so a new configuration needs no new trace), keeps every intermediate value of a *base*
configuration, and evaluates a configuration that differs from the base in one layer by executing only
the graph nodes downstream of that layer. With batch statistics in the BNs (``evaluation.batch_statistics``)
an upstream BN sees the same batch either way, so the logits equal a full forward pass bit for bit (the
tests check it on every model of the zoo); the saving is the share of the network above the changed layer,
about half on average.
"""
from __future__ import annotations

import operator

import torch
import torch.fx
from torch import Tensor, nn

from mpq.method.layers import QConv2d, QLinear, SwitchableBatchNorm2d

# functions that write into their first argument: a re-executed node must not write into a cached value
_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.iand, operator.ior}


class _LeafTracer(torch.fx.Tracer):
    """torch.fx's tracer, with the weight-coupled layers and switchable BNs kept whole (their bits are state)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (QConv2d, QLinear, SwitchableBatchNorm2d)) or super().is_leaf_module(m, qualname)


class GraphCache:
    """A model's forward pass as a list of graph nodes, with the values of one base configuration kept.

    Args:
        model: the model to run (e.g. ``Supernet.model``); traced once, its modules called as they are.
        changeable: for each name a move may change (a searchable layer), the module names whose state that
            move changes (the layer and its switchable BN).
    """

    def __init__(self, model: nn.Module, changeable: dict[str, tuple[str, ...]]) -> None:
        graph = _LeafTracer().trace(model)
        self.modules = dict(model.named_modules())
        self.model = model
        self.nodes = [n for n in graph.nodes]
        self.inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(self.inputs) != 1:
            raise ValueError(f"the model's forward must take one tensor, its graph has {len(self.inputs)} inputs")
        self.output = next(n for n in self.nodes if n.op == "output")
        self.downstream: dict[str, list[torch.fx.Node]] = {}
        for name, modules in changeable.items():
            seeds = [n for n in self.nodes if n.op == "call_module" and n.target in modules]
            if not seeds:
                raise ValueError(f"layer {name!r} is not called in the traced graph")
            self.downstream[name] = self._after(seeds)

    def _after(self, seeds: list[torch.fx.Node]) -> list[torch.fx.Node]:
        """The seed nodes and every node that depends on them, in execution (graph) order."""
        dirty = set(seeds)
        for node in self.nodes:                       # graph order is a topological order
            if node not in dirty and any(arg in dirty for arg in node.all_input_nodes):
                dirty.add(node)
        return [n for n in self.nodes if n in dirty]

    def _mutates(self, node: torch.fx.Node) -> bool:
        if node.op == "call_module":
            return bool(getattr(self.modules[node.target], "inplace", False))
        if node.op == "call_function":
            return node.target in _INPLACE_FUNCTIONS or bool(node.kwargs.get("inplace", False))
        return node.op == "call_method" and str(node.target).endswith("_")

    def _run(self, node: torch.fx.Node, env: dict, fresh: set | None) -> object:
        args = torch.fx.node.map_arg(node.args, env.__getitem__)
        kwargs = torch.fx.node.map_arg(node.kwargs, env.__getitem__)
        if fresh is not None and args and isinstance(node.args[0], torch.fx.Node) and node.args[0] not in fresh \
                and self._mutates(node):
            args = (args[0].clone(), *args[1:])       # never write into a value the base keeps
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            value = self.model
            for part in str(node.target).split("."):
                value = getattr(value, part)
            return value
        if node.op == "output":
            return args[0]
        raise NotImplementedError(f"graph node {node.name}: op {node.op!r}")

    def full(self, x: Tensor) -> tuple[Tensor, dict]:
        """Every node on ``x``: the output and the values of all nodes (the new base)."""
        env: dict = {self.inputs[0]: x}
        for node in self.nodes:
            if node.op != "placeholder":
                env[node] = self._run(node, env, None)
        return env[self.output], env

    def partial(self, base: dict, changed: str) -> tuple[Tensor, dict]:
        """The nodes downstream of layer ``changed`` re-run over ``base``'s values: output and values."""
        env = dict(base)
        nodes = self.downstream[changed]
        fresh = set(nodes)
        for node in nodes:
            env[node] = self._run(node, env, fresh)
        return env[self.output], env
