"""The bit-width supernet (claim C1): convert a float model, then set, sample or export a configuration.

A configuration (``bit_cfg``) is data: ``{layer name: (w_bits, a_bits)}`` over the searchable layers,
JSON-serialisable and validated on entry. The first conv (8-bit weights on the unquantized image) and the
last linear (W8A8) stay out of the search (docs/method.md section 2), as does any layer the caller's filter
rejects. Conv -> BN pairs are found by tracing the model's graph (``torch.fx``), not by layer names.
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.fx
from torch import Tensor, nn

from mpq.method.cost import CostTable, LayerShape, bitops, model_size_mib
from mpq.method.layers import QConv2d, QLinear, SwitchableBatchNorm2d, quant_layers

log = logging.getLogger(__name__)

BitCfg = dict[str, tuple[int, int]]
LayerFilter = Callable[[str, nn.Module], bool]
FIXED_BITS = 8


@dataclass(frozen=True)
class SupernetSpec:
    """Everything needed to rebuild a supernet's structure from a float model (stored in checkpoints)."""

    w_bit_choices: tuple[int, ...] = (2, 3, 4, 5, 6)
    a_bit_choices: tuple[int, ...] = (2, 3, 4, 5, 6)
    depthwise_min_bits: int = 3     # depthwise convs never go below 3-bit weights (the floor itself if no choice reaches it)
    fixed_bits: int = FIXED_BITS    # first conv (weights) and last linear (weights and input)
    grad_scaling: bool = False      # LSQ gradient scaling (off in the official configs)
    depthwise_floor_activations: bool = True   # the floor holds for depthwise convs' input activations too (official)

    def __post_init__(self) -> None:
        for name in ("w_bit_choices", "a_bit_choices"):
            choices = getattr(self, name)
            if not choices or list(choices) != sorted(set(choices)) or min(choices) < 1:
                raise ValueError(f"{name} must be sorted unique positive ints, got {choices}")
        if self.depthwise_min_bits < 0:
            raise ValueError(f"depthwise_min_bits must be >= 0, got {self.depthwise_min_bits}")


def conv_bn_pairs(model: nn.Module) -> dict[str, str]:
    """``{conv name: bn name}`` for every BatchNorm2d that directly consumes a Conv2d's output."""
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.BatchNorm2d):
            src = node.args[0]
            if isinstance(src, torch.fx.Node) and src.op == "call_module" and isinstance(modules.get(src.target), nn.Conv2d):
                pairs[src.target] = node.target
    return pairs


@torch.no_grad()
def layer_shapes(model: nn.Module, input_size: Sequence[int]) -> list[LayerShape]:
    """Shapes of every conv and linear in execution order, from one forward pass on zeros."""
    shapes: list[LayerShape] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            def hook(m, inputs, out, name=name):
                shapes.append(LayerShape(name, "conv", m.in_channels, m.out_channels, tuple(m.kernel_size),
                                         m.groups, (out.shape[2], out.shape[3])))
        elif isinstance(module, nn.Linear):
            def hook(m, inputs, out, name=name):
                shapes.append(LayerShape(name, "linear", m.in_features, m.out_features))
        else:
            continue
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


class Supernet(nn.Module):
    """A float model whose convs and linears are weight-coupled over bit-widths.

    Verbs: ``set_config``, ``sample_config``, ``export``; plus ``calibrate`` (explicit step-size
    initialisation) and ``cost_table`` (BitOPs and size as pure functions of shapes).
    """

    def __init__(self, model: nn.Module, input_size: Sequence[int], spec: SupernetSpec = SupernetSpec(),
                 layer_filter: LayerFilter | None = None,
                 layer_choices: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None) -> None:
        super().__init__()
        model = copy.deepcopy(model)
        self.spec = spec
        self.input_size = tuple(input_size)
        shapes = layer_shapes(model, input_size)
        if not shapes or shapes[0].kind != "conv" or shapes[-1].kind != "linear":
            raise ValueError("the model must start with a conv and end with a linear layer")
        bn_of = conv_bn_pairs(model)
        first, last = shapes[0].name, shapes[-1].name
        modules = dict(model.named_modules())
        self.choices: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.bn_of: dict[str, str] = {}
        fixed: dict[str, tuple[int, int]] = {}
        for shape in shapes:
            name, module = shape.name, modules[shape.name]
            searchable = name not in (first, last) and (layer_filter is None or layer_filter(name, module))
            if not searchable:
                w_choices: tuple[int, ...] = (spec.fixed_bits,)
                a_choices: tuple[int, ...] | None = None if name == first else (spec.fixed_bits,)
                fixed[name] = (spec.fixed_bits, spec.fixed_bits)
            else:
                depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
                floor = spec.depthwise_min_bits if depthwise else 0
                a_floor = floor if spec.depthwise_floor_activations else 0
                # a uniform W2A2 baseline (choices (2,)) keeps its depthwise convs at the floor, like the supernet
                w_choices = tuple(b for b in spec.w_bit_choices if b >= floor) or (floor,)
                a_choices = tuple(b for b in spec.a_bit_choices if b >= a_floor) or (a_floor,)
                if layer_choices is not None:      # e.g. one searched configuration, to retrain it alone
                    if name not in layer_choices:
                        raise ValueError(f"layer_choices lacks searchable layer {name!r}")
                    w_choices, a_choices = (tuple(sorted(c)) for c in layer_choices[name])
                self.choices[name] = (w_choices, a_choices)
            qcls = QConv2d if isinstance(module, nn.Conv2d) else QLinear
            _set_submodule(model, name, qcls.from_float(module, w_choices, a_choices, spec.grad_scaling))
            if searchable and name in bn_of:
                pairs = [(w, a) for w in w_choices for a in a_choices]
                _set_submodule(model, bn_of[name], SwitchableBatchNorm2d(modules[bn_of[name]], pairs))
                self.bn_of[name] = bn_of[name]
        if layer_choices is not None and set(layer_choices) - set(self.choices):
            raise ValueError(f"layer_choices names layers outside the search: {sorted(set(layer_choices) - set(self.choices))}")
        self.model = model
        # plain dicts (not submodules): looked up on every set_config, which the search calls thousands of times
        self._qlayers = quant_layers(model)
        self._switch_bns = {conv: model.get_submodule(bn) for conv, bn in self.bn_of.items()}
        self.fixed_names = tuple(fixed)
        self.cost_table = CostTable(tuple(shapes), fixed)
        self._config: BitCfg | None = None
        self.set_float()

    # --- configurations ---------------------------------------------------------------------------------

    @property
    def searchable(self) -> tuple[str, ...]:
        return tuple(self.choices)

    @property
    def layers(self) -> Mapping[str, QConv2d | QLinear]:
        """Every weight-coupled layer by qualified name, in module order (``layers.quant_layers`` of the model, listed
        once at construction: a one-shot step reads it several times, and walking the module tree each time cost
        about 5% of a batch-16 step). Do not change it."""
        return self._qlayers

    @property
    def config(self) -> BitCfg | None:
        """The configuration set last (None while the model runs in full precision)."""
        return None if self._config is None else dict(self._config)

    def validate(self, bit_cfg: Mapping[str, Sequence[int]]) -> BitCfg:
        """Return ``bit_cfg`` as ``{name: (w, a)}`` ints, or raise ValueError naming what is wrong."""
        if not isinstance(bit_cfg, Mapping):
            raise ValueError(f"a bit configuration is a mapping layer -> (w_bits, a_bits), got {type(bit_cfg).__name__}")
        unknown = sorted(set(bit_cfg) - set(self.choices))
        missing = sorted(set(self.choices) - set(bit_cfg))
        if unknown or missing:
            raise ValueError(f"bit configuration: unknown layers {unknown}, missing layers {missing}; "
                             f"searchable layers are {list(self.choices)}")
        out: BitCfg = {}
        for name in self.choices:
            pair = bit_cfg[name]
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(b, int) and not isinstance(b, bool) for b in pair)):
                raise ValueError(f"layer {name}: expected (w_bits, a_bits) as two ints, got {pair!r}")
            w_choices, a_choices = self.choices[name]
            if pair[0] not in w_choices or pair[1] not in a_choices:
                raise ValueError(f"layer {name}: bits {tuple(pair)} outside its candidates "
                                 f"w {w_choices}, a {a_choices}")
            out[name] = (int(pair[0]), int(pair[1]))
        return out

    def set_config(self, bit_cfg: Mapping[str, Sequence[int]]) -> None:
        """Quantize every searchable layer at its pair in ``bit_cfg``; fixed layers at their fixed bits."""
        cfg = self.validate(bit_cfg)
        layers = self._qlayers
        for name, (w_bits, a_bits) in cfg.items():
            layers[name].set_bits(w_bits, a_bits)
            if name in self._switch_bns:
                self._switch_bns[name].set_bits(w_bits, a_bits)
        for name in self.fixed_names:
            layer = layers[name]
            layer.set_bits(self.spec.fixed_bits, self.spec.fixed_bits if layer.quantize_input else None)
        self._config = cfg

    def set_float(self) -> None:
        """Run the float model: no quantization anywhere, the float BNs."""
        for name, layer in self._qlayers.items():
            layer.set_bits(None, None)
            if name in self._switch_bns:
                self._switch_bns[name].set_bits(None, None)
        self._config = None

    def uniform_config(self, w_bits: int, a_bits: int | None = None) -> BitCfg:
        """Every searchable layer at (w_bits, a_bits), each clipped up to the layer's floor (depthwise convs)."""
        a_bits = w_bits if a_bits is None else a_bits
        return {n: (max(w_bits, min(w)), max(a_bits, min(a))) for n, (w, a) in self.choices.items()}

    def max_config(self) -> BitCfg:
        return {n: (max(w), max(a)) for n, (w, a) in self.choices.items()}

    def min_config(self, candidates: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None) -> BitCfg:
        """Every searchable layer at its lowest candidates: of ``candidates`` (a scheduler's decision applied,
        ``scheduler.apply_decision``: the supernet's own lowest point) or, without, of its full lists."""
        return {n: (min(w), min(a)) for n, (w, a) in (candidates or self.choices).items()}

    def sample_config(self, gen: torch.Generator,
                      candidates: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None) -> BitCfg:
        """Each layer's w_bits and a_bits drawn uniformly and independently from its (current) candidates."""
        cands = candidates or self.choices
        cfg = {}
        for name in self.choices:
            w_choices, a_choices = cands[name]
            w = w_choices[int(torch.randint(len(w_choices), (1,), generator=gen))]
            a = a_choices[int(torch.randint(len(a_choices), (1,), generator=gen))]
            cfg[name] = (int(w), int(a))
        return cfg

    # --- cost -----------------------------------------------------------------------------------------------

    def bitops(self, bit_cfg: Mapping[str, Sequence[int]]) -> int:
        return bitops(self.cost_table, self.validate(bit_cfg))

    def size_mib(self, bit_cfg: Mapping[str, Sequence[int]]) -> float:
        return model_size_mib(self.cost_table, self.validate(bit_cfg))

    # --- initialisation, forward, export ------------------------------------------------------------------

    @torch.no_grad()
    def calibrate(self, images: Tensor) -> None:
        """Initialise every step size: weights from their statistics, activations from one float batch.

        The activation quantizer's range is signed where the calibration inputs go negative (a layer after
        a linear bottleneck), unsigned otherwise (after ReLU).
        """
        config = self.config
        self.set_float()
        layers = quant_layers(self.model)
        inputs: dict[str, Tensor] = {}
        hooks = [m.register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0]))
                 for name, m in layers.items()]
        was_training = self.training
        self.eval()
        try:
            self.model(images)
        finally:
            for h in hooks:
                h.remove()
            self.train(was_training)
        for name, layer in layers.items():
            layer.weight_quantizer.init_from_weight(layer.weight)
            if layer.quantize_input:
                layer.input_quantizer.signed = bool(inputs[name].min() < 0)
                layer.input_quantizer.init_from_activation(inputs[name])
        if config is not None:
            self.set_config(config)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def get_extra_state(self) -> dict:
        # the activation ranges' signs come from calibration data, so they travel with the state_dict
        return {"signed_inputs": [n for n, m in quant_layers(self.model).items() if m.input_quantizer.signed]}

    def set_extra_state(self, state: dict) -> None:
        signed = set(state["signed_inputs"])
        for name, layer in quant_layers(self.model).items():
            layer.input_quantizer.signed = name in signed

    def bn_layers(self) -> dict[str, SwitchableBatchNorm2d]:
        """Switchable BN of each searchable conv, keyed by the conv's name."""
        return dict(self._switch_bns)

    def export(self, bit_cfg: Mapping[str, Sequence[int]]) -> nn.Module:
        """A standalone model fixed at ``bit_cfg``: each switchable BN replaced by the pair's own BN."""
        cfg = self.validate(bit_cfg)
        config = self.config
        self.set_config(cfg)
        model = copy.deepcopy(self.model)
        for conv, bn in self.bn_of.items():
            _set_submodule(model, bn, copy.deepcopy(model.get_submodule(bn).active_bn))
        if config is None:
            self.set_float()
        else:
            self.set_config(config)
        return model


# --- helpers over a set of BNs --------------------------------------------------------------------------

def active_batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The BNs the current configuration uses: the active one of each switchable BN, plus plain BNs."""
    out: list[nn.BatchNorm2d] = []
    inside = set()
    for m in model.modules():
        if isinstance(m, SwitchableBatchNorm2d):
            out.append(m.active_bn)
            inside.update(id(bn) for bn in m.bns.values())
    out += [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in inside]
    return out


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Tensor]) -> None:
    """Re-estimate the running statistics of the active BNs on ``batches`` (normalised float tensors).

    Statistics are reset and then averaged over all batches (``momentum=None``); nothing but BN running
    statistics changes. This matters: the BN of a rarely sampled pair (W2A2 is drawn in about 1 path in 25)
    has stale statistics otherwise (docs/method.md section 3).
    """
    bns = active_batchnorms(model)
    saved = [(bn.momentum, bn.training) for bn in bns]
    was_training = model.training
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for x in batches:
            model(x)
    finally:
        for bn, (momentum, training) in zip(bns, saved):
            bn.momentum = momentum
            bn.train(training)
        model.train(was_training)


def config_to_json(bit_cfg: Mapping[str, Sequence[int]], **extra: object) -> str:
    """A configuration (and any metadata, e.g. BitOPs and accuracy) as JSON."""
    return json.dumps({"bit_cfg": {k: [int(v[0]), int(v[1])] for k, v in bit_cfg.items()}, **extra}, indent=2)


def config_from_json(text: str) -> BitCfg:
    obj = json.loads(text)
    if not isinstance(obj, dict) or "bit_cfg" not in obj:
        raise ValueError("expected a JSON object with a 'bit_cfg' entry (as written by config_to_json)")
    return {k: tuple(v) for k, v in obj["bit_cfg"].items()}
