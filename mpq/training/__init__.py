"""Training: the FP and one-shot loops, the shared and CUDA-graph steps, checkpoints, hardware placement and
the data-parallel launcher. Uses the method, the data and the models; knows nothing of search or studies."""
