"""``optim_g: {type: AdamW, ..., lookahead: {alpha: 0.5, k: 6}}``: any ``torch.optim`` optimizer, optionally inside
:class:`~vfsr_models.lookahead.Lookahead` (VidFace's AdamW + Lookahead). Stock basicsr 1.4.2's
``BaseModel.get_optimizer`` knows only Adam; :func:`any_torch_optimizer` replaces it when ``vfsr_models`` is imported.
"""
import torch
from basicsr.models.base_model import BaseModel

from vfsr_models.lookahead import Lookahead


def any_torch_optimizer() -> None:
    def get_optimizer(self, optim_type, params, lr, lookahead=None, **kwargs):
        optimizer_class = getattr(torch.optim, optim_type, None)
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
            raise ValueError(f'optimizer type {optim_type!r} is not a torch.optim optimizer (e.g. Adam, AdamW, SGD)')
        optimizer = optimizer_class(params, lr, **kwargs)
        return Lookahead(optimizer, **lookahead) if lookahead is not None else optimizer

    BaseModel.get_optimizer = get_optimizer
