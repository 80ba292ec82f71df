"""The one-shot training recipe: the ``oneshot`` section of params.yaml (docs/method.md section 2).

It lives with training rather than in ``mpq.config`` because it names the method's scheduler and supernet
settings; ``mpq.config`` holds the sections that need nothing of the method, so that FP training does not
depend on the quantizer."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from mpq.config import finite, in_unit, require
from mpq.method.scheduler import SchedulerConfig
from mpq.method.supernet import SupernetSpec
from mpq.models import model_entry


MIN_BITS, MAX_BITS = 2, 8    # candidate bit-widths: 2 (the paper's lowest) up to the fixed first and last layers' 8
DECAY_RULES = ("per_path_in_range", "per_step_layer")    # oneshot.cancel_2bit_decay_rule (mpq.training.steps)


@dataclass(frozen=True)
class OneShotConfig:
    """The ``oneshot`` section of params.yaml; the paper's (official code's) values where it gives them."""

    epochs: int = 2
    train_size: int | None = None      # training images used (None: all of the training split)
    lr: float = 0.04                   # SGD learning rate for weights, BN and biases (tuned here for short runs)
    momentum: float = 0.9
    weight_decay: float = 2.5e-5       # conv weights (and the final linear layer's with decay_linear); official value
    decay_linear: bool = False         # official code: decay 4-D (conv) weights only
    warmup_epochs: float = 0.1
    step_lr: float = 3e-3              # Adam learning rate for LSQ step sizes (tuned here for short runs)
    num_random_paths: int = 3
    kd_weight: float = 0.5             # random paths: (1 - kd_weight) * CE + kd_weight * KL(teacher || student)
    kd_temperature: float = 1.0
    ema_decay: float = 0.99            # per step; our runs have a few hundred steps, so a short horizon
    quant_error_penalty: bool = True   # official code, not in the paper's text
    qe_weight: float = 0.1
    qe_start: float = 0.27             # fraction of training after which the penalty ramps up to qe_weight
    qe_ramp: str = "cosine"            # "cosine" (official code) or "linear"
    qe_max_path: bool = False          # official code: random paths only; True adds it on the max path too
    cancel_2bit_decay: bool = True     # official code: 2-bit-sampled weights are spared their decay
    # how: "per_path_in_range" (official) subtracts the decay once per random path that samples a conv at 2 bits,
    # from the weights inside that path's 2-bit range only; "per_step_layer" skips a 2-bit-sampled layer's decay
    # once per step (this package's rule before issue 45)
    cancel_2bit_decay_rule: str = "per_path_in_range"
    w_bit_choices: tuple[int, ...] = (2, 3, 4, 5, 6)
    a_bit_choices: tuple[int, ...] = (2, 3, 4, 5, 6)
    depthwise_min_bits: int = 3
    depthwise_floor_activations: bool = True   # official code: depthwise convs' activations have the floor too
    grad_scaling: bool = False         # LSQ gradient scaling, off in the official configs
    clip_grad_value: float | None = 1.0  # official code: every gradient element clamped to [-1, 1] after all paths
    # bit-width scheduler (C3, mpq.method.scheduler); times are fractions of the whole run (SchedulerConfig says why)
    scheduler: bool = True
    sched_warmup: float = 0.047          # official: the first call after epoch 7 of 150
    sched_every: float = 0.0133
    sched_late_from: float = 0.72
    sched_every_late: float = 0.1
    sched_min_steps: int = 100           # fewest optimizer steps between calls: about the EMA horizon
    sched_ratio_start: float = 0.5
    sched_ratio_end: float = 0.2
    sched_band: float = 0.125
    sched_count_rounding: str = "floor"  # layers frozen of n at ratio r: "floor" (official int(n * r)) or "round"
    # layer scores over each layer's "current" weight candidates (the paper's) or its "full" list (this package's
    # variant, not the paper's: a frozen layer keeps its score, so a decision can persist; the ablation's sched_full)
    sched_score_candidates: str = "current"
    # a frozen layer loses its lowest activation candidate too (the official ResNet config shares one list between
    # weights and activations) or not (MobileNetV2 config); None: the model family's (``for_model``, mpq.models)
    sched_freeze_activations: bool | None = None
    # information distortion mitigation (C4, mpq.method.losses): MSE of lowest-bit BN outputs to the max path's
    idm: bool = True
    idm_weight: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "w_bit_choices", tuple(self.w_bit_choices))
        object.__setattr__(self, "a_bit_choices", tuple(self.a_bit_choices))
        require(self.epochs > 0, "oneshot.epochs", self.epochs, "a positive integer")
        require(self.train_size is None or self.train_size > 0, "oneshot.train_size", self.train_size,
                "a positive number of images, or null for the whole training split")
        for name in ("lr", "step_lr", "kd_temperature"):
            require(finite(getattr(self, name)) and getattr(self, name) > 0, f"oneshot.{name}", getattr(self, name),
                    "a finite number > 0")
        require(in_unit(self.momentum, high_open=True), "oneshot.momentum", self.momentum, "in [0, 1)")
        for name in ("weight_decay", "qe_weight", "idm_weight"):
            require(finite(getattr(self, name)) and getattr(self, name) >= 0, f"oneshot.{name}", getattr(self, name),
                    "a finite number >= 0")
        require(finite(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs, "oneshot.warmup_epochs",
                self.warmup_epochs, f"in [0, oneshot.epochs] = [0, {self.epochs}] (warm-up is part of training)")
        require(self.num_random_paths >= 0, "oneshot.num_random_paths", self.num_random_paths, "an integer >= 0")
        require(in_unit(self.kd_weight), "oneshot.kd_weight", self.kd_weight, "in [0, 1]")
        require(in_unit(self.qe_start), "oneshot.qe_start", self.qe_start, "a fraction of training in [0, 1]")
        require(in_unit(self.ema_decay, low_open=True, high_open=True), "oneshot.ema_decay", self.ema_decay,
                "in (0, 1)")
        require(self.qe_ramp in ("cosine", "linear"), "oneshot.qe_ramp", self.qe_ramp, "'cosine' or 'linear'")
        require(self.clip_grad_value is None or (finite(self.clip_grad_value) and self.clip_grad_value > 0),
                "oneshot.clip_grad_value", self.clip_grad_value, "a finite number > 0, or null (no clipping)")
        for name in ("w_bit_choices", "a_bit_choices"):
            choices = getattr(self, name)
            require(bool(choices) and list(choices) == sorted(set(choices)) and MIN_BITS <= choices[0]
                    and choices[-1] <= MAX_BITS, f"oneshot.{name}", list(choices),
                    f"a non-empty increasing list of distinct bit-widths from {MIN_BITS} to {MAX_BITS}")
        require(self.depthwise_min_bits >= 0, "oneshot.depthwise_min_bits", self.depthwise_min_bits,
                "an integer >= 0 (0: no floor for depthwise convs)")
        require(self.cancel_2bit_decay_rule in DECAY_RULES, "oneshot.cancel_2bit_decay_rule",
                self.cancel_2bit_decay_rule, f"one of {list(DECAY_RULES)}")
        require(isinstance(self.depthwise_floor_activations, bool), "oneshot.depthwise_floor_activations",
                self.depthwise_floor_activations, "true or false")
        try:
            self.scheduler_config()           # validates the sched_* fields
        except ValueError as exc:             # SchedulerConfig names its fields without the section's prefix
            raise ValueError(str(exc).replace("scheduler.", "oneshot.sched_")) from None

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig(warmup=self.sched_warmup, every=self.sched_every, late_from=self.sched_late_from,
                               every_late=self.sched_every_late, min_steps=self.sched_min_steps, ratio_start=self.sched_ratio_start,
                               ratio_end=self.sched_ratio_end, band=self.sched_band,
                               count_rounding=self.sched_count_rounding,
                               score_candidates=self.sched_score_candidates,
                               freeze_activations=self.sched_freeze_activations)

    def supernet_spec(self) -> SupernetSpec:
        return SupernetSpec(self.w_bit_choices, self.a_bit_choices, self.depthwise_min_bits,
                            grad_scaling=self.grad_scaling,
                            depthwise_floor_activations=self.depthwise_floor_activations)

    def for_model(self, name: str) -> "OneShotConfig":
        """This recipe for registered model ``name``: ``sched_freeze_activations`` null becomes the model family's
        official setting (``mpq.models.model_entry(name).shared_candidates``: true for ResNet, whose official
        config shares one candidate list between weights and activations; false for MobileNetV2 and
        EfficientNet-Lite, which follow the MobileNetV2 config's split lists); a value set in params stays."""
        if self.sched_freeze_activations is not None:
            model_entry(name)                 # an unknown model is refused all the same
            return self
        return replace(self, sched_freeze_activations=model_entry(name).shared_candidates)

    def baseline(self, bits: int) -> "OneShotConfig":
        """The same recipe as a uniform WkAk LSQ baseline: one candidate, the max path only.

        Depthwise convs keep their floor (``depthwise_min_bits``): the W2A2 baseline has them at 3-bit weights (and
        activations, with ``depthwise_floor_activations``), the same configuration as the supernet's uniform W2A2
        point.
        """
        return OneShotConfig(**{**asdict(self.fixed_config()), "w_bit_choices": (bits,), "a_bit_choices": (bits,)})

    def fixed_config(self) -> "OneShotConfig":
        """The same recipe for one fixed configuration (plain LSQ training): the max path only.

        Pair it with a supernet whose layers have one candidate each (``Supernet(layer_choices=...)``).
        """
        return OneShotConfig(**{**asdict(self), "num_random_paths": 0, "cancel_2bit_decay": False,
                                "scheduler": False, "idm": False})
