"""Rows of the reproduction suite for this paper (see grokray.reproduce.core)."""

from __future__ import annotations
