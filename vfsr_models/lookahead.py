"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back") around any torch optimizer.

VidFace trains with AdamW wrapped in Lookahead(alpha=0.5, k=6). Select it from options with
``optim_g: {type: AdamW, lr: 4.0e-4, lookahead: {alpha: 0.5, k: 6}}`` (see ``vfsr_compat.any_torch_optimizer``).
"""
import torch
from torch.optim import Optimizer


class Lookahead(Optimizer):
    """Every ``k`` steps of the inner ("fast") optimizer, move the slow weights ``alpha`` of the way to the fast ones
    and restart the fast weights from there.

    The slow weights start at the parameters' values when the wrapper is built (the paper's phi_0 = theta_0).
    ``param_groups`` is the inner optimizer's own list, so learning-rate schedulers act on the inner optimizer.
    """

    def __init__(self, optimizer: Optimizer, alpha: float = 0.5, k: int = 6):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f'lookahead alpha must be in (0, 1], got {alpha}')
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f'lookahead k must be a positive integer, got {k}')
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.alpha, self.k = alpha, k
        self.fast_steps = 0
        for group in self.param_groups:
            for param in group['params']:
                self.state[param]['slow_weight'] = param.detach().clone()

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            for group in self.param_groups:
                for param in group['params']:
                    slow_weight = self.state[param]['slow_weight']
                    slow_weight.add_(param - slow_weight, alpha=self.alpha)
                    param.copy_(slow_weight)
        return loss

    def state_dict(self) -> dict:
        return {'slow': super().state_dict(), 'fast': self.optimizer.state_dict(), 'fast_steps': self.fast_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict['slow'])
        self.optimizer.load_state_dict(state_dict['fast'])
        self.param_groups = self.optimizer.param_groups
        self.fast_steps = state_dict['fast_steps']
