"""`gazeclip analyze`: the paper's figures (Figs 1, 7, 8, 10, 11; Table V's estimators) from a cache and model folders.

One module per analysis; each computes typed results and writes a figure, CSV and JSON (docs/ANALYSIS.md).
"""
