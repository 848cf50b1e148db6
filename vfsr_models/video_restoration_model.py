"""The baselines of KEEP Table 1 in vfsr's pipeline: any BasicSR or vfsr restoration network trained and evaluated
on KEEP's VFHQ clips, degradation and per-clip metrics (``VFHQClipDataset`` for training, ``VideoClipTestDataset``
and :func:`vfsr_eval.clip_scoring.score_clip` for validation), so EDVR, BasicVSR, BasicVSR++ and CodeFormer are
measured exactly as KEEP is.

Clips arrive as (b, t, 3, h, w) RGB in [-1, 1] (``normalize: true``). Top-level options say how the network sees
them:

* ``frames_per_call``: ``clip`` (default) for networks that restore a whole clip, (b, t, 3, h, w) -> (b, t, 3, H, W)
  (BasicVSR, BasicVSR++); an odd number n for networks that restore the centre frame of n frames,
  (b, n, 3, h, w) -> (b, 3, H, W) (EDVR: 5): training scores the centre frame of each training clip (``num_frame``
  must be n), validation restores every frame from the n frames around it, repeating the first and last frames
  at the clip's ends; ``frame`` for image networks, (b, 3, h, w) -> (b, 3, H, W), run frame by frame (CodeFormer).
* ``input_range``: ``[0, 1]`` (default; BasicSR's networks) or ``[-1, 1]`` (CodeFormer).
* ``input_upscale``: bilinear upsampling of the LQ before the network (default 1; 4 for CodeFormer, which restores
  512x512 faces from KEEP's 128x128 LQ, as KEEP's ``need_upscale`` does).
* ``output_index``: which item is the image when the network returns a tuple (CodeFormer: 0).
* ``forward_kwargs``: keywords for every forward call (CodeFormer: ``{w: 0.5}``, its fidelity weight).

Losses: ``train.pixel_opt`` and optional ``train.perceptual_opt`` on the restored frames.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.utils.registry import MODEL_REGISTRY

from vfsr_models.generator_training import GeneratorTrainingModel


@MODEL_REGISTRY.register()
class VideoRestorationModel(GeneratorTrainingModel):
    """A restoration network of any frame layout, trained and validated like KEEP (see the module docstring)."""

    def __init__(self, opt):
        self.frames_per_call = opt.get('frames_per_call', 'clip')
        if not (self.frames_per_call in ('clip', 'frame') or
                (isinstance(self.frames_per_call, int) and self.frames_per_call % 2 == 1)):
            raise ValueError(f"frames_per_call must be 'clip', 'frame' or an odd number of frames, got "
                             f'{self.frames_per_call!r}')
        self.input_range = tuple(opt.get('input_range', (0, 1)))
        if self.input_range not in ((0, 1), (-1, 1)):
            raise ValueError(f'input_range must be [0, 1] or [-1, 1], got {list(self.input_range)}')
        self.input_upscale = opt.get('input_upscale', 1)
        self.output_index = opt.get('output_index')
        self.forward_kwargs = dict(opt.get('forward_kwargs') or {})
        super().__init__(opt)

    def define_losses(self, train_opt):
        self.cri_pix = self.build_optional_loss(train_opt, 'pixel_opt')
        self.cri_perceptual = self.build_optional_loss(train_opt, 'perceptual_opt')
        if self.cri_pix is None and self.cri_perceptual is None:
            raise ValueError('VideoRestorationModel needs train.pixel_opt or train.perceptual_opt')

    # ------------------------------------------------------------------------------------------- network calls
    def call_network(self, net, frames: torch.Tensor) -> torch.Tensor:
        """``net`` on (b, [n,] 3, h, w) frames in [-1, 1] -> its image output in [-1, 1]."""
        if self.input_upscale != 1:
            size = [side * self.input_upscale for side in frames.shape[-2:]]
            frames = F.interpolate(frames.flatten(0, -4), size=size, mode='bilinear',
                                   align_corners=False).view(*frames.shape[:-2], *size)
        if self.input_range == (0, 1):
            frames = (frames + 1) / 2
        output = net(frames, **self.forward_kwargs)
        if self.output_index is not None:
            output = output[self.output_index]
        return output * 2 - 1 if self.input_range == (0, 1) else output

    def window_indices(self, t: int, length: int) -> list[int]:
        """The n frame indices centred on ``t``, the first and last frames repeated past the clip's ends."""
        radius = self.frames_per_call // 2
        return [min(max(index, 0), length - 1) for index in range(t - radius, t + radius + 1)]

    def restore(self, net) -> torch.Tensor:
        """Every frame of the clip ``self.lq`` (b, t, 3, h, w) -> (b, t, 3, H, W)."""
        length = self.lq.shape[1]
        if self.frames_per_call == 'clip':
            return self.call_network(net, self.lq)
        if self.frames_per_call == 'frame':
            return torch.stack([self.call_network(net, self.lq[:, t]) for t in range(length)], dim=1)
        return torch.stack([self.call_network(net, self.lq[:, self.window_indices(t, length)])
                            for t in range(length)], dim=1)

    def training_output_and_target(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(restored, GT), both (N, 3, H, W): every frame, or the centre frame for windowed networks."""
        if self.frames_per_call == 'clip':
            return self.call_network(self.net_g, self.lq).flatten(0, 1), self.gt.flatten(0, 1)
        if self.frames_per_call == 'frame':
            return self.call_network(self.net_g, self.lq.flatten(0, 1)), self.gt.flatten(0, 1)
        if self.lq.shape[1] != self.frames_per_call:
            raise ValueError(f'frames_per_call is {self.frames_per_call}: the training clips must have that many '
                             f'frames (datasets.train.num_frame), got {self.lq.shape[1]}')
        return self.call_network(self.net_g, self.lq), self.gt[:, self.frames_per_call // 2]

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        output, target = self.training_output_and_target()
        loss_dict = OrderedDict()
        total = 0
        if self.cri_pix is not None:
            loss_dict['l_pix'] = self.cri_pix(output, target)
            total = total + loss_dict['l_pix']
        if self.cri_perceptual is not None:
            loss_dict['l_percep'] = self.cri_perceptual(output, target)
            total = total + loss_dict['l_percep']
        total.backward()
        self.optimizer_g.step()
        self.finish_iteration(loss_dict)
