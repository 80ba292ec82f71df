"""Data: the image sets the study trains and tests on, their splits, and their acquisition into ``data/``."""
