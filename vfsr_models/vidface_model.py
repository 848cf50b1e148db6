"""Training and validation of VidFace (and of the Table-1 baselines on the same TUFs data)."""
from collections import OrderedDict
from os import path as osp

import numpy as np
import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import imwrite, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY

from vfsr_arch.acceleration import compile_network, to_float32, training_autocast
from vfsr_data.matlab_resize import matlab_resize
from vfsr_eval.clip_scoring import average_over_clips, score_clip
from vfsr_eval.metrics_file import write_metrics_file
from vfsr_models.generator_training import evaluate_generator


def split_network_output(output) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(frames, landmark predictions)`` from VidFace's ``(out, landmarks)`` or from a plain tensor (baselines)."""
    if isinstance(output, (tuple, list)):
        return output[0], list(output[1])
    return output, []


@MODEL_REGISTRY.register()
class VidFaceModel(SRModel):
    """VidFace's training step and a validation that scores the reference snapshot.

    Batches (``TUFS145KDataset``): ``lq`` (b, t, 3, 16, 12), ``gt`` (b, t, 3, 128, 96), both RGB in [-1, 1],
    ``landmarks`` (b, t, 10), ``landmark_flags`` (b, t). The network returns either every snapshot
    (b, t, 3, H, W) (VidFace, Bicubic), optionally with per-iteration landmark predictions, or only the reference
    snapshot (b, 3, H, W) (EDVR).

    Losses (official): ``pixel_opt`` (Charbonnier, sum, eps 1e-12) over all snapshots plus the reference snapshot
    again; ``landmark_opt`` (:class:`~vfsr_models.landmark_loss.LandmarkSmoothL1Loss`) over the iterations'
    predictions where the flags are 1. ``train.grad_clip_norm`` (official 0.05) clips the gradient norm before each
    step; optimizer (AdamW + Lookahead), scheduler and ``ema_decay`` come from BasicSR's options. ``train.autocast:
    bf16`` runs the forward under bf16 autocast (the losses stay in float32); ``train.compile: true`` compiles the
    network's submodules (``vfsr_arch.acceleration.compile_network``).

    Validation: PSNR/SSIM of the reference snapshot (``reference_index``, default 3 = ``im4``) in RGB and on Y, as
    configured under ``val.metrics`` (e.g. ``psnr_rgb``/``psnr_y`` with ``test_y_channel``; any frame metric of
    ``vfsr_eval``); the averages and each clip's scores are also written to
    ``<experiment or results folder>/metrics_<dataset>.json`` (:mod:`vfsr_eval.metrics_file`). ``save_img`` writes
    the output of the reference snapshot and a side-by-side ``LR bicubic | output | GT`` image.
    """

    def __init__(self, opt: dict):
        self.reference_index = opt.get('reference_index', 3)
        super().__init__(opt)

    def init_training_settings(self):
        train_opt = self.opt['train']
        landmark_opt = train_opt.get('landmark_opt')
        self.cri_landmark = build_loss(landmark_opt).to(self.device) if landmark_opt else None
        self.grad_clip_norm = train_opt.get('grad_clip_norm')
        super().init_training_settings()
        compile_network(self.get_bare_model(self.net_g), train_opt.get('compile', False))  # as GeneratorTrainingModel

    def feed_data(self, data: dict):
        self.lq = data['lq'].to(self.device)
        for name in ('gt', 'landmarks', 'landmark_flags'):
            if name in data:
                setattr(self, name, data[name].to(self.device))

    def pixel_loss(self, frames: torch.Tensor) -> torch.Tensor:
        """Charbonnier over every snapshot plus the reference snapshot once more (official weighting)."""
        reference_gt = self.gt[:, self.reference_index]
        if frames.dim() == 4:  # the network restores the reference snapshot only
            return self.cri_pix(frames, reference_gt)
        return self.cri_pix(frames, self.gt) + self.cri_pix(frames[:, self.reference_index], reference_gt)

    def optimize_parameters(self, current_iter: int):
        self.optimizer_g.zero_grad()
        with training_autocast(self.opt['train'].get('autocast'), self.device):  # the forward only; losses in float32
            output = self.net_g(self.lq)
        frames, landmark_predictions = split_network_output(to_float32(output))
        loss_dict = OrderedDict()
        l_total = loss_dict['l_pix'] = self.pixel_loss(frames)
        if self.cri_landmark is not None and landmark_predictions and hasattr(self, 'landmarks'):
            loss_dict['l_landmark'] = self.cri_landmark(landmark_predictions, self.landmarks.flatten(0, 1),
                                                        self.landmark_flags.flatten())
            l_total = l_total + loss_dict['l_landmark']
        l_total.backward()
        if self.grad_clip_norm:
            # logged before clipping: how far the raw gradient is from the clip threshold
            loss_dict['grad_norm'] = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip_norm)
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        output = evaluate_generator(self, lambda net: net(self.lq))
        self.output, self.landmark_predictions = split_network_output(output)

    def reference_output(self) -> torch.Tensor:
        """(b, 3, H, W): the restored reference snapshot."""
        return self.output if self.output.dim() == 4 else self.output[:, self.reference_index]

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics_opt = self.opt['val'].get('metrics') or {}
        clip_scores = []
        for val_data in dataloader:
            self.feed_data(val_data)
            self.test()
            outputs = self.reference_output().cpu()
            for item, key in enumerate(val_data['key']):
                output_img = tensor2img(outputs[item], min_max=(-1, 1))
                gt_img = None
                if hasattr(self, 'gt'):
                    gt_img = tensor2img(self.gt[item, self.reference_index].cpu(), min_max=(-1, 1))
                    if metrics_opt:
                        clip_scores.append(score_clip([output_img], [gt_img], metrics_opt, key))
                if save_img:
                    self.save_visuals(dataset_name, key, current_iter, output_img, gt_img, item)
            for name in ('lq', 'gt', 'landmarks', 'landmark_flags', 'output'):
                self.__dict__.pop(name, None)
        if clip_scores:
            self._initialize_best_metric_results(dataset_name)
            self.metric_results = {name: value['mean'] for name, value in average_over_clips(clip_scores).items()}
            for name, value in self.metric_results.items():
                self._update_best_metric_result(dataset_name, name, value, current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
            write_metrics_file(self.opt['path']['log'], dataset_name, current_iter, clip_scores)

    def save_visuals(self, dataset_name: str, key: str, current_iter, output_img: np.ndarray,
                     gt_img: np.ndarray | None, item: int):
        """Write the reference snapshot's output and ``LR bicubic | output | GT`` side by side (BGR uint8)."""
        name = key.replace('/', '_')
        if self.opt['is_train']:
            stem = osp.join(self.opt['path']['visualization'], name, f'{name}_{current_iter}')
        else:
            suffix = self.opt['val'].get('suffix') or self.opt['name']
            stem = osp.join(self.opt['path']['visualization'], dataset_name, f'{name}_{suffix}')
        scale = output_img.shape[0] // self.lq.shape[-2]
        bicubic = matlab_resize(self.lq[item, self.reference_index], scale)
        panels = [tensor2img(bicubic.cpu(), min_max=(-1, 1)), output_img] + ([gt_img] if gt_img is not None else [])
        imwrite(output_img, f'{stem}.png')
        imwrite(np.concatenate(panels, axis=1), f'{stem}_compare.png')
