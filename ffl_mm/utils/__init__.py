# Copyright (c) ffl_mm contributors.
"""Helpers of every layer (models, engine, apis): argument checks and the
one module through which ffl_mm reads other libraries' private names."""
