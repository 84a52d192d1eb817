# Copyright (c) ffl_mm contributors.
"""What a multi-branch classifier's state-dict keys say about it, read
without building or importing the classifier."""
from typing import Mapping, Optional


def branches_in(state_dict: Mapping) -> Optional[int]:
    """The number of branches of a multi-branch state dict: one more than
    the largest ``i`` of its ``heads.{i}.*`` keys; None without such
    keys (a plain ``ImageClassifier``'s ``head.*``)."""
    found = {int(k.split('.')[1]) for k in state_dict
             if k.startswith('heads.') and k.split('.')[1].isdigit()}
    return max(found) + 1 if found else None
