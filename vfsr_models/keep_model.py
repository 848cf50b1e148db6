"""KEEP stage 2: train the LQ encoder, the Kalman filter and the code-prediction transformer on degraded clips.

The generator, codebook, HQ encoder and flow network stay as stage 1 left them (``network_g.fix_modules``). Losses,
as the official ``KEEPModel`` (option names included):

* code-feature MSE (``use_hq_feat_loss``, ``feat_loss_weight`` 1): the measured LQ latents ``lq_feat`` against the
  codebook entries of the GT codes;
* cross-entropy (``cross_entropy_loss``, ``entropy_loss_weight`` 0.5): the code logits of ``z_hat`` against the GT
  codes;
* ``pixel_opt`` (L1, 0.1) on the restored frames; optional ``perceptual_opt`` and ``temporal_opt`` (stage 3 uses
  them, see :class:`vfsr_models.keep_gan_model.KEEPGANModel`).

GT codes: the official code builds a second, frozen VQGAN encoder (``network_vqgan``) from the stage-1 checkpoint.
KEEP's own ``hq_encoder`` and ``quantize`` are that same frozen stage-1 encoder and codebook (``vqgan_path`` loads
them), so by default we use them and save a copy of the encoder; this requires them to be frozen. A
``network_vqgan`` option (any network with ``encoder`` and ``quantize``, e.g. ``VQAutoEncoder`` with ``model_path``)
is still honoured.
Note (official behaviour, kept): the looked-up codes are detached (``detach_16``), so with a frozen generator and
no CFT the L1 term carries no gradient in stage 2; it is logged all the same.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.archs.arch_util import flow_warp, resize_flow
from basicsr.utils.registry import MODEL_REGISTRY

from vfsr_arch.acceleration import to_float32, training_autocast
from vfsr_models.generator_training import GeneratorTrainingModel

TEMPORAL_WARP_TYPES = ('GT', 'HR')


@MODEL_REGISTRY.register()
class KEEPModel(GeneratorTrainingModel):
    """Options besides the losses: ``need_upscale`` (top level, default true: LQ frames are 4x smaller than the
    network's img_size and are upsampled bilinearly, as in official training); ``val.max_length`` (default 20):
    validation restores clips in chunks of this many frames, each restarting the anchor, as official inference."""

    def __init__(self, opt):
        self.need_upscale = opt.get('need_upscale', True)
        super().__init__(opt)

    # ------------------------------------------------------------------------------------------------ losses
    def define_losses(self, train_opt):
        self.cri_pix = self.build_optional_loss(train_opt, 'pixel_opt')
        self.cri_perceptual = self.build_optional_loss(train_opt, 'perceptual_opt')
        self.cri_temporal = self.build_optional_loss(train_opt, 'temporal_opt')
        self.temporal_warp_type = train_opt.get('temporal_warp_type', 'GT')
        if self.temporal_warp_type not in TEMPORAL_WARP_TYPES:
            raise ValueError(f'train.temporal_warp_type must be one of {TEMPORAL_WARP_TYPES}, got '
                             f'{self.temporal_warp_type!r}')
        net = self.get_bare_model(self.net_g)
        if self.cri_temporal is not None and not net.temp_reg_list:
            raise ValueError('train.temporal_opt needs generator features: set network_g.temp_reg_list (e.g. [\'32\'])')
        self.feat_loss_weight = train_opt.get('feat_loss_weight', 1.0) if train_opt.get('use_hq_feat_loss') else 0
        self.entropy_loss_weight = (train_opt.get('entropy_loss_weight', 0.5)
                                    if train_opt.get('cross_entropy_loss') else 0)
        # The frozen stage-1 encoder and codebook that give the GT codes.
        self.code_encoder, self.code_quantizer = net.hq_encoder, net.quantize
        if self.uses_code_losses and self.opt.get('network_vqgan'):
            vqgan = build_network(self.opt['network_vqgan']).to(self.device).requires_grad_(False).eval()
            self.code_encoder, self.code_quantizer = vqgan.encoder, vqgan.quantize
        elif self.uses_code_losses:
            trainable = [name for name in ('hq_encoder', 'quantize')
                         if any(p.requires_grad for p in getattr(net, name).parameters())]
            if trainable:
                raise ValueError(f'the code losses take GT codes from the frozen stage-1 hq_encoder and quantize, but '
                                 f'{trainable} are trainable: add them to network_g.fix_modules')

    @property
    def uses_code_losses(self) -> bool:
        return self.feat_loss_weight > 0 or self.entropy_loss_weight > 0

    @torch.no_grad()
    def gt_codes(self) -> torch.Tensor:
        """Codebook indices (b*t, h*w) of the GT frames under the frozen stage-1 encoder and codebook."""
        b, t = self.gt.shape[:2]
        _, _, stats = self.code_quantizer(self.code_encoder(self.gt.flatten(0, 1)))
        return stats['min_encoding_indices'].view(b * t, -1)

    def code_losses(self, logits, lq_feat, loss_dict):
        """Stage-2 losses on the code prediction: logits (b*t, h*w, n), lq_feat (b*t, emb_dim, h, w)."""
        idx_gt = self.gt_codes()
        total = 0
        if self.feat_loss_weight > 0:
            n, c, h, w = lq_feat.shape
            quant_feat_gt = self.get_bare_model(self.net_g).quantize.get_codebook_feat(idx_gt, (n, h, w, c))
            loss_dict['l_feat_encoder'] = F.mse_loss(lq_feat, quant_feat_gt.detach()) * self.feat_loss_weight
            total = total + loss_dict['l_feat_encoder']
        if self.entropy_loss_weight > 0:
            loss_dict['l_cross_entropy'] = F.cross_entropy(logits.transpose(1, 2), idx_gt) * self.entropy_loss_weight
            total = total + loss_dict['l_cross_entropy']
        return total

    def temporal_loss(self, temporal_features, loss_dict):
        """Features of frame i against frame i-1's features warped to frame i by the flow between the GT (or
        restored) frames, at every ``temp_reg_list`` size."""
        frames = self.gt if self.temporal_warp_type == 'GT' else self.output.detach()
        b, t = frames.shape[:2]
        flows = self.get_bare_model(self.net_g).flownet(frames[:, 1:].flatten(0, 1), frames[:, :-1].flatten(0, 1))
        total = 0
        for feat in temporal_features.values():
            h, w = feat.shape[-2:]
            flow = resize_flow(flows, 'shape', [h, w]).permute(0, 2, 3, 1)
            warped_previous = flow_warp(feat[:, :-1].flatten(0, 1), flow)
            total = total + self.cri_temporal(feat[:, 1:].flatten(0, 1), warped_previous)
        loss_dict['l_temporal'] = total
        return total

    def generator_losses(self, logits, lq_feat, temporal_features, loss_dict):
        """Every configured loss of the restored clip ``self.output`` (b, t, 3, H, W) against ``self.gt``."""
        total = self.code_losses(logits, lq_feat, loss_dict) if self.uses_code_losses else 0
        if self.cri_temporal is not None:
            total = total + self.temporal_loss(temporal_features, loss_dict)
        if self.cri_pix is not None:
            loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
            total = total + loss_dict['l_pix']
        if self.cri_perceptual is not None:
            loss_dict['l_percep'] = self.cri_perceptual(self.output.flatten(0, 1), self.gt.flatten(0, 1))
            total = total + loss_dict['l_percep']
        return total

    # ------------------------------------------------------------------------------------------------ training
    def run_generator(self):
        """Training forward, under bf16 autocast with ``train.autocast: bf16`` (its results in float32 for the
        losses): sets ``self.output`` and returns (logits, lq_feat, temporal features)."""
        with training_autocast(self.opt['train'].get('autocast'), self.device):
            if self.uses_code_losses:
                output, logits, lq_feat, temporal_features = self.net_g(
                    self.lq, detach_16=True, early_feat=True, need_upscale=self.need_upscale)
            else:
                logits = lq_feat = None
                output, temporal_features = self.net_g(self.lq, detach_16=True, early_feat=False,
                                                       need_upscale=self.need_upscale)
        self.output, logits, lq_feat, temporal_features = to_float32((output, logits, lq_feat, temporal_features))
        return logits, lq_feat, temporal_features

    def optimize_parameters(self, current_iter):
        loss_dict = OrderedDict()
        self.optimizer_g.zero_grad()
        l_g_total = self.generator_losses(*self.run_generator(), loss_dict)
        l_g_total.backward()
        self.optimizer_g.step()
        self.finish_iteration(loss_dict)

    def restore(self, net):
        max_length = (self.opt.get('val') or {}).get('max_length', 20)
        return net(self.lq, need_upscale=self.need_upscale, max_length=max_length)
