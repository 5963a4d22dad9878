"""``make reproduce``: every shipped study's headline as a measured row beside the paper's number.

``python -m grokray.reproduce [--rows KEY,...] [--quick] [--out DIR]`` runs the rows of
``REGISTRY`` (one module per paper) and writes ``DIR/REPORT.md``, ``DIR/report.json`` and a PNG
per row. ``--quick`` is the smoke profile the tests run (seconds per row, PASS not expected).
"""

from __future__ import annotations

import importlib

from grokray.reproduce.core import REGISTRY, Context, Row, row

PAPER_MODULES = ("doshi", "notsawo_modular", "notsawo_sparse", "zhang", "demoss", "zhu")


def load_rows() -> dict:
    """Import every paper's module (each registers its rows) and return the registry."""
    for name in PAPER_MODULES:
        importlib.import_module(f"grokray.reproduce.{name}")
    return REGISTRY


__all__ = ["REGISTRY", "Context", "Row", "load_rows", "row"]
