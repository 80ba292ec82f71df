"""What each figure the entry page shows is, in words: its alt text (what the figure shows, for a reader who cannot
see it) and its caption (what to look at). One entry per notebook figure the page embeds; the forest plots of
verdicts are described where they are drawn (``mpq.pages.forest.verdict_block``)."""
from __future__ import annotations

import html

FIGURES = {
    "baselines_vs_supernet.png": (
        "Test top-1 against uniform bit-width, one panel per model: the one-shot supernet beside uniform LSQ trained "
        "alone for each bit-width.",
        "Look at the gap between the two lines at each bit-width: the paper has the supernet on par or above LSQ "
        "trained alone; the verdicts above say which gaps are clear of the noise."),
    "interference_toy.png": (
        "Toy with two shared weights trained with the candidate sets {4,6} and {2,4,6}: their paths over the 4-bit "
        "grid, cumulative rounding-threshold crossings per step, and the gradient variance per window.",
        "Look at the crossings and the variance with 2-bit in the set against without it: the paper (C2) expects "
        "more oscillation when 2-bit joins."),
    "oscillation.png": (
        "Flip rates and reversals of the integer weight levels at 4, 5 and 6 bits on ResNet-20, one dot per seed "
        "and a bar for the mean, per ablation cell.",
        "Look at whether the cells trained with 2-bit in the set flip more at 4-6 bits than those without it, "
        "relative to the spread of the dots (seeds)."),
    "bn_density.png": (
        "Densities of one middle layer's BN outputs at the lowest configuration and at the max path (W6A6), after "
        "BN recalibration, without and with IDM, for one seed.",
        "These densities cannot show the drift of the paper's Figures 3-4: BN recalibration standardises each "
        "channel under either configuration, so both curves are centred and scaled alike by construction. The "
        "distortion lies in which value each position takes: read the relative MSE in the panel titles and in "
        "the verdict above (idm minus plain)."),
    "transfer.png": (
        "Transfer from Fashion-MNIST: test top-1 against G-BitOPs per target data set, and held-out top-1 "
        "against forward/backward passes for each arm.",
        "Look at where the transferred supernet's points sit against the other arms at equal BitOPs, and at how "
        "fast each arm's curve rises per pass."),
    "search_front.png": (
        "Test top-1 against G-BitOPs per model for the greedy, random and evolutionary searches and uniform "
        "precision.",
        "Look at whether the greedy points lie above the others at equal BitOPs; the verdicts above say by how "
        "much, with its interval."),
    "bit_allocation.png": (
        "Bits per searchable layer, in model order, of the greedy configuration at each BitOPs level, per model.",
        "Look at which layers keep more bits as the budget shrinks, and whether the same layers do so in every "
        "model."),
    "budget_curve.png": (
        "No-retrain minus retrained, and supernet minus LSQ alone, in top-1 points against the training budget "
        "of both sides.",
        "Look at whether the gaps shrink as the budget grows; at the default budget alone there is one point per "
        "gap, not a curve."),
    "fp_curves.png": (
        "Full-precision training: training loss and test top-1 per epoch, one line per model.",
        "Look at whether each model's loss has flattened and its accuracy settled by the last epoch: the "
        "quantized runs start from these weights."),
    "supernet_curves.png": (
        "One-shot training: the max path's (W6A6) training loss per epoch, one line per model.",
        "Look at whether the loss still falls at the last epoch: a supernet that has not settled makes every "
        "gap to the baselines harder to read."),
}


def figure_html(src: str, fig: str) -> str:
    """A notebook figure on the entry page: ``<figure>`` with its alt text and its caption (``fig`` a key of
    FIGURES; an unknown figure refuses, so no figure reaches the page undescribed).

    >>> figure_html("figures/x.png", "x.png")
    Traceback (most recent call last):
    ...
    KeyError: 'x.png has no alt text and caption: add it to mpq.pages.captions.FIGURES'
    """
    if fig not in FIGURES:
        raise KeyError(f"{fig} has no alt text and caption: add it to mpq.pages.captions.FIGURES")
    alt, caption = FIGURES[fig]
    return (f"<figure><img src='{html.escape(src)}' alt='{html.escape(alt)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
