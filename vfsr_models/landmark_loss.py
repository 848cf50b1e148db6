"""VidFace's landmark loss: smooth-L1 on the landmarks predicted in each refinement iteration."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F


@LOSS_REGISTRY.register()
class LandmarkSmoothL1Loss(nn.Module):
    """``loss_weight * sum_i iteration_weight_base**i * smooth_l1(predictions[i][valid], target[valid])``.

    Later iterations weigh more (official: 1 and 2 for the two iterations, ``reduction='sum'``); snapshots whose
    flag is 0 (no landmark annotation) are left out.

    Args:
        loss_weight: overall weight.
        reduction: ``'sum'`` (official) or ``'mean'`` over the valid landmark values of one iteration.
        beta: smooth-L1 threshold between the quadratic and linear parts (PyTorch's default 1.0, as official).
        iteration_weight_base: iteration ``i`` (from 0) is weighted ``iteration_weight_base ** i``.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'sum', beta: float = 1.0,
                 iteration_weight_base: float = 2.0):
        super().__init__()
        if reduction not in ('sum', 'mean'):
            raise ValueError(f"LandmarkSmoothL1Loss reduction must be 'sum' or 'mean', got {reduction!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.beta = beta
        self.iteration_weight_base = iteration_weight_base

    def forward(self, predictions: list[torch.Tensor], target: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """
        Args:
            predictions: one (n, 10) tensor per refinement iteration (n = batch * snapshots).
            target: (n, 10) ground-truth landmarks.
            flags: (n,) 1 where the snapshot has landmarks, 0 where it has none.
        """
        valid = flags > 0
        # zero-valued, yet connected to every prediction: DDP expects a gradient for the landmark head even when
        # a batch has no annotated snapshot
        total = sum(prediction.sum() for prediction in predictions) * 0
        if not valid.any():
            return total
        for iteration, prediction in enumerate(predictions):
            loss = F.smooth_l1_loss(prediction[valid], target[valid], reduction=self.reduction, beta=self.beta)
            total = total + self.iteration_weight_base**iteration * loss
        return self.loss_weight * total
