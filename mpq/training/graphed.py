"""One-shot training steps with the bit configuration in device tensors, replayed as one CUDA graph.

On a GPU the eager one-shot step (``mpq.training.oneshot.train_step``) is launch-bound: four paths of small
kernels, each quantizer's bit-width chosen in Python, and the GPU mostly waits for the host
(README, "On a GPU"). A CUDA graph replays recorded kernels without the host, but it records one
fixed sequence of kernels, while every step draws new random paths. ``GraphedStep`` makes the
configuration data instead of control flow, so one recording serves every configuration:

- each searchable layer's step sizes (one per candidate bit-width) and its switchable BN's copies (one
  per bit pair) are stacked into one tensor per layer, and the module's own parameters and buffers become
  views of rows of that stack (``Tensor.data``), so optimisers, the EMA, ``state_dict`` and eager code
  keep working on the same numbers;
- while the step runs, those modules pick their row with an index tensor on the device, and the integer
  range with a row of a bounds table: ``(path, layer) -> (weight row, activation row, BN row)`` is one
  small tensor written before each step;
- the terms that depend on the configuration in Python become masks: IDM (the layers at their lowest
  current weight candidate) is a sum over every layer weighted by 0 or 1, and the quantization-error
  weight is a device scalar, so its ramp needs no new recording.

The step computes what ``train_step`` computes, in the same order: the same losses, the same gradients
(a row's gradient is the parameter's gradient; rows no path used get none, as in eager code) and the same
running statistics. On a CPU it runs the same code without a graph (``capture=False``), which the tests
compare with ``train_step``: bit for bit without IDM; with IDM the gradients agree to rounding, because the
zero-weighted terms hand some BN outputs a gradient in another memory layout, and the sums after it run in
another order. Only the recording and replay need a GPU. Not supported (checked): LSQ
gradient scaling, BN with cumulative averaging (``momentum=None``) and gradient sync across processes.

Build it after the supernet is on its device and before the EMA copy is made, and do not move the supernet
afterwards (``Module.to`` would give every parameter its own storage again).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from mpq.method.layers import SwitchableBatchNorm2d, bn_key, nchw_bn_below, quant_layers
from mpq.method.losses import capture_bn_outputs, coupled_rounding_error, distillation_loss, grid
from mpq.training.recipe import OneShotConfig
from mpq.training.steps import clip_gradients, correct_2bit_decay, decay_weights, step_stats
from mpq.method.quantizer import LSQQuantizer, int_range
from mpq.method.supernet import Supernet

Choices = tuple[Sequence[int], Sequence[int]]


class _LSQRange(torch.autograd.Function):
    """LSQ fake quantization with the step size and integer range as 0-d tensors.

    The same passes as ``quantizer._LSQFakeQuant`` (so the same values and gradients), with ``qmin`` and
    ``qmax`` read from the device instead of the Python call: a recording then serves every bit-width.
    """

    @staticmethod
    def forward(ctx, x: Tensor, s: Tensor, qmin: Tensor, qmax: Tensor) -> Tensor:
        v = torch.div(x, s)
        if 1 in x.shape:
            # clamp with numbers normalises the strides of size-1 dims (a depthwise weight's), clamp with tensors
            # keeps them, and a conv picks its output's memory layout from its weight's strides: take the former's
            out = torch.clamp(v, -math.inf, math.inf).clamp_(qmin, qmax)
        else:
            out = torch.clamp(v, qmin, qmax)
        inside = torch.eq(out, v)
        out.round_()
        residual = torch.where(inside, torch.sub(out, v, out=v), out, out=v)     # dq/ds, in v's buffer
        ctx.save_for_backward(inside, residual)
        return out.mul_(s)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        inside, residual = ctx.saved_tensors
        buf = torch.mul(grad_out, residual)
        grad_s = buf.sum() * 1.0            # as the library's quantizer (grad_scale 1): the same float steps
        grad_x = torch.where(inside, grad_out, grad_out.new_zeros(()), out=buf)
        return grad_x, grad_s, None, None


def _stack_rows(tensors: Sequence[Tensor]) -> Tensor:
    """One tensor holding ``tensors`` as rows; each of ``tensors`` becomes a view of its row."""
    stack = torch.stack([t.detach() for t in tensors])
    rows = stack.detach()
    for i, t in enumerate(tensors):
        t.data = rows[i]
    return stack


class _QuantRows:
    """A searchable quantizer's step sizes as one leaf tensor (one row per candidate) and its ranges."""

    def __init__(self, q: LSQQuantizer) -> None:
        if q.grad_scaling:
            raise ValueError("GraphedStep does not support LSQ gradient scaling (oneshot.grad_scaling: false)")
        self.params = [q.step_size[str(b)] for b in q.bit_choices]
        self.steps = _stack_rows(self.params).requires_grad_()                 # (candidates,)
        bounds = [int_range(b, q.signed) for b in q.bit_choices]
        self.bounds = torch.tensor(bounds, dtype=self.steps.dtype, device=self.steps.device)   # (candidates, 2)
        self.row = {b: i for i, b in enumerate(q.bit_choices)}
        self.slot: Tensor | None = None                                       # (1,) index, set per path

    def forward(self, x: Tensor) -> Tensor:
        bounds = self.bounds.index_select(0, self.slot)                        # (1, 2)
        return _LSQRange.apply(x, self.steps.index_select(0, self.slot).reshape(()), bounds[0, 0], bounds[0, 1])


class _BNRows:
    """A switchable BN's per-pair copies as stacked rows: weights and biases (leaves), running statistics."""

    def __init__(self, m: SwitchableBatchNorm2d) -> None:
        self.keys = [k for k in m.bns if k != "fp"]
        bns = [m.bns[k] for k in self.keys]
        first = bns[0]
        if any(bn.momentum is None for bn in bns) or not all(bn.affine and bn.track_running_stats for bn in bns):
            raise ValueError("GraphedStep needs affine BNs with running statistics and a fixed momentum")
        self.momentum, self.eps = first.momentum, first.eps
        self.weights = [bn.weight for bn in bns]
        self.biases = [bn.bias for bn in bns]
        self.weight = _stack_rows(self.weights).requires_grad_()             # (pairs, C)
        self.bias = _stack_rows(self.biases).requires_grad_()
        self.mean = _stack_rows([bn.running_mean for bn in bns])
        self.var = _stack_rows([bn.running_var for bn in bns])
        self.count = _stack_rows([bn.num_batches_tracked for bn in bns])      # (pairs,)
        self.row = {k: i for i, k in enumerate(self.keys)}
        self.nchw_below = nchw_bn_below() if first.weight.device.type == "cpu" else 0
        self.slot: Tensor | None = None                                       # (1,) index, set per path

    def forward(self, x: Tensor) -> Tensor:
        i = self.slot
        mean, var = self.mean.index_select(0, i)[0], self.var.index_select(0, i)[0]
        weight, bias = self.weight.index_select(0, i)[0], self.bias.index_select(0, i)[0]
        route = (x.shape[1] < self.nchw_below and not x.is_contiguous()      # as SwitchableBatchNorm2d on a CPU
                 and x.is_contiguous(memory_format=torch.channels_last))
        out = F.batch_norm(x.contiguous() if route else x, mean, var, weight, bias, True, self.momentum, self.eps)
        with torch.no_grad():                        # batch_norm updated the gathered copies: write them back
            self.mean.index_copy_(0, i, mean[None])
            self.var.index_copy_(0, i, var[None])
            self.count.index_add_(0, i, torch.ones_like(i))
        return out.contiguous(memory_format=torch.channels_last) if route else out


class GraphedStep:
    """``oneshot.train_step`` for one supernet and batch shape, with the configuration in device tensors.

    Call it as ``train_step`` (without ``grad_sync``): it draws the random paths from ``gen`` in the same
    order, leaves the gradients (weight decay included) in the parameters' ``.grad`` for the optimisers,
    and returns the same numbers. ``capture`` (default: on a CUDA device) records the step as a CUDA graph
    on the first call and replays it afterwards; without it the same tensor-indexed code runs eagerly.
    Every batch must have the first one's shape and memory format.

    Args:
        supernet: calibrated, on its device, in training mode.
        cfg: the one-shot recipe (its loss terms, paths and weight decay).
    """

    def __init__(self, supernet: Supernet, cfg: OneShotConfig, capture: bool | None = None) -> None:
        device = next(supernet.parameters()).device
        self.supernet, self.cfg, self.device = supernet, cfg, device
        self.capture = device.type == "cuda" if capture is None else capture
        if self.capture and device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device; the supernet is on {device} (use capture=False)")
        self.paths = 1 + cfg.num_random_paths
        self.idm_weight = cfg.idm_weight if cfg.idm and cfg.num_random_paths > 0 else 0.0
        layers = quant_layers(supernet.model)
        self.names = list(supernet.searchable)
        self.layers = [layers[n] for n in self.names]
        supernet.set_config(supernet.max_config())            # fixed layers at their fixed bits, for good
        self.w_rows = [_QuantRows(layer.weight_quantizer) for layer in self.layers]
        self.a_rows = [_QuantRows(layer.input_quantizer) for layer in self.layers]
        switch = supernet.bn_layers()
        self.bn_rows = {n: _BNRows(switch[n]) for n in self.names if n in switch}
        self.bn_modules = {n: supernet.model.get_submodule(supernet.bn_of[n]) for n in self.bn_rows}
        # per (path, layer): weight row, activation row, BN row; and the IDM mask (1: layer at its lowest weight)
        self.index = torch.zeros(self.paths, len(self.names), 3, dtype=torch.long, device=device)
        self.idm_mask = torch.zeros(self.paths, len(self.names), device=device)
        # per (path, layer): the quantization-error term's code spacing and highest pulled code (losses.grid)
        self.qe_grid = torch.zeros(self.paths, len(self.names), 2, device=device)
        self.qe_weight = torch.zeros((), device=device)
        self.x: Tensor | None = None                          # the batch, copied in (static for a graph)
        self.y: Tensor | None = None
        self._stacks = ([r.steps for r in self.w_rows + self.a_rows]
                        + [t for r in self.bn_rows.values() for t in (r.weight, r.bias)])
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: Tensor | None = None
        self._static_grads: list[tuple[nn.Parameter, Tensor]] = []

    # --- the step, as recorded -----------------------------------------------------------------------------

    def _select(self, path: int) -> None:
        """Point every searchable module at ``path``'s rows of the index tensor (views: no copy)."""
        for j, (w, a) in enumerate(zip(self.w_rows, self.a_rows)):
            w.slot, a.slot = self.index[path, j, 0:1], self.index[path, j, 1:2]
            if self.names[j] in self.bn_rows:
                self.bn_rows[self.names[j]].slot = self.index[path, j, 2:3]

    def _install(self) -> list[nn.Module]:
        """Route the searchable quantizers and BNs through their rows (an instance ``forward``)."""
        routes = []
        for j, layer in enumerate(self.layers):
            routes += [(layer.weight_quantizer, self.w_rows[j].forward), (layer.input_quantizer, self.a_rows[j].forward)]
            if self.names[j] in self.bn_rows:
                routes.append((self.bn_modules[self.names[j]], self.bn_rows[self.names[j]].forward))
        for module, forward in routes:
            module.forward = forward
        return [module for module, _ in routes]

    def _quantization_error(self, path: int) -> Tensor:
        """``losses.quantization_error`` on ``path``, each layer's step size and range read from its rows."""
        total = torch.zeros((), device=self.device)
        for j, (layer, rows) in enumerate(zip(self.layers, self.w_rows)):
            bounds = rows.bounds.index_select(0, rows.slot)                    # (1, 2)
            step = rows.steps.index_select(0, rows.slot).reshape(())
            total = total + coupled_rounding_error(layer.weight, step, bounds[0, 0], bounds[0, 1],
                                                   self.qe_grid[path, j, 0], self.qe_grid[path, j, 1])
        return total

    def _body(self) -> Tensor:
        """Every path of one step, forward and backward; returns ``[loss_max, random losses..., IDM terms...]``."""
        cfg = self.cfg
        routed = self._install()
        try:
            bns = self.bn_modules if self.idm_weight > 0 else {}
            self._select(0)
            with capture_bn_outputs(bns) as features:
                logits = self.supernet(self.x)
            teacher_features = {n: f.detach() for n, f in features.items()}
            loss = F.cross_entropy(logits, self.y)
            if cfg.quant_error_penalty and cfg.qe_max_path:
                loss = loss + self.qe_weight * self._quantization_error(0)
            loss.backward()
            teacher = logits.detach()
            values, idm_terms = [loss.detach()], []
            for path in range(1, self.paths):
                self._select(path)
                with capture_bn_outputs(bns) as features:
                    out = self.supernet(self.x)
                loss = ((1 - cfg.kd_weight) * F.cross_entropy(out, self.y)
                        + cfg.kd_weight * distillation_loss(out, teacher, cfg.kd_temperature))
                if cfg.quant_error_penalty:        # weight 0 early in the ramp: adds exact zeros
                    loss = loss + self.qe_weight * self._quantization_error(path)
                if bns:
                    mask = self.idm_mask[path]     # eager code sums the masked-in layers; + 0 * term is exact
                    terms = [mask[j] * F.mse_loss(features[n], teacher_features[n])
                             for j, n in enumerate(self.names) if n in bns]
                    idm = sum(terms[1:], terms[0])
                    loss = loss + self.idm_weight * idm
                    idm_terms.append(idm.detach())
                loss.backward()
                values.append(loss.detach())
            return torch.stack(values + idm_terms)
        finally:
            for module in routed:
                del module.forward

    def _record(self) -> None:
        """Warm up on a side stream (buffers restored after), then record the step as a CUDA graph."""
        saved = [b.clone() for b in self.supernet.buffers()]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for b, s in zip(self.supernet.buffers(), saved):
                b.copy_(s)
        for p in list(self.supernet.parameters()) + self._stacks:
            p.grad = None
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._body()
        self._static_grads = [(p, p.grad) for p in self.supernet.parameters() if p.grad is not None]

    # --- one step ------------------------------------------------------------------------------------------

    def _write_configs(self, configs: Sequence[Mapping[str, Sequence[int]]], cands: Mapping[str, Choices]) -> None:
        rows, mask, qe = [], [], []
        for bit_cfg in configs:
            rows.append([(w.row[bit_cfg[n][0]], a.row[bit_cfg[n][1]],
                          self.bn_rows[n].row[bn_key(*bit_cfg[n])] if n in self.bn_rows else 0)
                         for n, w, a in zip(self.names, self.w_rows, self.a_rows)])
            mask.append([float(bit_cfg[n][0] == min(cands[n][0])) for n in self.names])
            qe.append([grid(bit_cfg[n][0], min(cands[n][0]))[2:] for n in self.names])
        self.index.copy_(torch.tensor(rows))
        self.idm_mask.copy_(torch.tensor(mask))
        self.qe_grid.copy_(torch.tensor(qe, dtype=self.qe_grid.dtype))

    def __call__(self, x: Tensor, y: Tensor, gen: torch.Generator, qe_weight: float,
                 candidates: Mapping[str, Choices] | None = None) -> dict[str, float]:
        """One step on ``(x, y)``, as ``train_step(supernet, x, y, cfg, gen, qe_weight, None, candidates)``."""
        if self.x is None:
            self.x, self.y = torch.empty_like(x), torch.empty_like(y)
        if x.shape != self.x.shape or y.shape != self.y.shape:
            raise ValueError(f"GraphedStep was built for batches of {tuple(self.x.shape)}, got {tuple(x.shape)}")
        sn, cfg = self.supernet, self.cfg
        cands = candidates or sn.choices
        configs = [sn.max_config()] + [sn.sample_config(gen, candidates) for _ in range(self.paths - 1)]
        self._write_configs(configs, cands)
        self.qe_weight.fill_(qe_weight)
        self.x.copy_(x)
        self.y.copy_(y)
        if self.capture:
            if self._graph is None:
                self._record()
            self._graph.replay()
            out = self._out
            for p, g in self._static_grads:
                p.grad = g
        else:
            for t in self._stacks:
                t.grad = None
            out = self._body()
        self._hand_out_grads(configs)
        correct_2bit_decay(sn, cfg, configs[1:])
        clip_gradients(sn, cfg.clip_grad_value)
        decay_weights(sn, cfg, configs[1:])
        return step_stats(out.tolist(), self.paths - 1)

    def _hand_out_grads(self, configs: Sequence[Mapping[str, Sequence[int]]]) -> None:
        """Give each row some path used its gradient (a view of the stack's), the others none, as eager code."""
        for j, n in enumerate(self.names):
            for rows, side in ((self.w_rows[j], 0), (self.a_rows[j], 1)):
                used = {c[n][side] for c in configs}
                for bits, i in rows.row.items():
                    rows.params[i].grad = rows.steps.grad[i] if bits in used else None
            if n in self.bn_rows:
                bn, used = self.bn_rows[n], {bn_key(*c[n]) for c in configs}
                for key, i in bn.row.items():
                    bn.weights[i].grad = bn.weight.grad[i] if key in used else None
                    bn.biases[i].grad = bn.bias.grad[i] if key in used else None
