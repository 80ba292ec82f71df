"""Inference-only search: the search space and results (``space``), the greedy walk (``greedy``), the random
and evolutionary baselines (``sampling``), and the supernet's scorer and evaluation (``incremental``,
``evaluation``). ``space``, ``greedy`` and ``sampling`` know nothing about models."""
