"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back") around any torch optimizer.

VidFace trains with AdamW wrapped in Lookahead(alpha=0.5, k=6). Select it from options with
``optim_g: {type: AdamW, lr: 4.0e-4, lookahead: {alpha: 0.5, k: 6}}`` (see ``vfsr_compat.any_torch_optimizer``);
``lookahead: {..., slow_start: initial}`` gives the paper's form instead of the official one.
"""
import torch
from torch.optim import Optimizer

SLOW_STARTS = ('first_sync', 'initial')


class Lookahead(Optimizer):
    """Every ``k`` steps of the inner ("fast") optimizer, move the slow weights ``alpha`` of the way to the fast ones
    and restart the fast weights from there.

    ``slow_start`` says where the slow weights start:

    * ``'first_sync'`` (default, the official VidFace optimizer): they are created from the fast weights at the first
      synchronisation, so step k leaves the weights unchanged and the first pull-back happens at step 2k;
    * ``'initial'`` (the paper's phi_0 = theta_0): they are the parameters' values when the wrapper is built, so
      step k already pulls the weights half way back (alpha 0.5).

    ``param_groups`` is the inner optimizer's own list, so learning-rate schedulers act on the inner optimizer.
    """

    def __init__(self, optimizer: Optimizer, alpha: float = 0.5, k: int = 6, slow_start: str = 'first_sync'):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f'lookahead alpha must be in (0, 1], got {alpha}')
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f'lookahead k must be a positive integer, got {k}')
        if slow_start not in SLOW_STARTS:
            raise ValueError(f'lookahead slow_start must be one of {SLOW_STARTS}, got {slow_start!r}')
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.alpha, self.k, self.slow_start = alpha, k, slow_start
        self.fast_steps = 0
        if slow_start == 'initial':
            for param in self.params():
                self.state[param]['slow_weight'] = param.detach().clone()

    def params(self):
        return (param for group in self.param_groups for param in group['params'])

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            for param in self.params():
                state = self.state[param]
                if 'slow_weight' not in state:  # first synchronisation of the official form: slow = fast
                    state['slow_weight'] = param.detach().clone()
                state['slow_weight'].add_(param - state['slow_weight'], alpha=self.alpha)
                param.copy_(state['slow_weight'])
        return loss

    def state_dict(self) -> dict:
        return {'slow': super().state_dict(), 'fast': self.optimizer.state_dict(), 'fast_steps': self.fast_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict['slow'])
        self.optimizer.load_state_dict(state_dict['fast'])
        self.param_groups = self.optimizer.param_groups
        self.fast_steps = state_dict['fast_steps']
