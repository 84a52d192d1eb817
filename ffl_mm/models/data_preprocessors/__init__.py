# Copyright (c) ffl_mm contributors.
from .multi_view_data_preprocessor import MultiViewClsDataPreprocessor

__all__ = ['MultiViewClsDataPreprocessor']
