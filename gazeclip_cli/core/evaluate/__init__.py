"""Evaluation: the paper's metrics (``metrics``), image corruptions (``corruptions``) and tables (``tables``).

Import the submodule you need; this package imports nothing so that ``metrics`` stays light.
"""
