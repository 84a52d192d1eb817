# Copyright (c) ffl_mm contributors.
