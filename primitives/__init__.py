"""Neural primitives, model assembly, proxy data and the evaluator: everything that imports torch.

Shape letters used in every docstring and shape comment of this package:

    B  batch            T  sequence length     D  model width (d_model)
    H  heads            P  head dimension      N  state size (Mamba2 d_state)
    V  vocabulary       F  MLP hidden width    L  number of layers
    G  key/value heads (grouped-query attention), C  chunks, K  chunk length

This package knows nothing of agents, archives or event loops. It runs inside evaluation worker
processes; its results cross process boundaries as frozen dataclasses.
"""

from __future__ import annotations
