# Copyright (c) ffl_mm contributors.
"""Helpers shared by several test modules (no tests here)."""
