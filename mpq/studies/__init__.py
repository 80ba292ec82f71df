"""The study: one module per experiment of the paper's analogue list, each a function from parameters to plain
data (records, data frames) that a notebook calls and a test checks; plus the verdict statistics."""
