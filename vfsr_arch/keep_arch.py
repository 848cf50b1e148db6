"""KEEP: Kalman-inspired feature propagation for video face super-resolution (Feng, Li, Loy, ECCV 2024).

A CodeFormer backbone (VQGAN encoder, code-prediction transformer, frozen codebook and generator with CFT skip
fusion) made recurrent over a clip. Per frame i of a clip (frame 0 is the *anchor*):

1. measure: the LQ frame is encoded to the latent ``z_i`` (plus skip features for CFT), and the optical flow from
   frame i to frame i-1 is estimated (GMFlow, without gradients);
2. predict: the previous *restored* frame is warped to frame i by that flow and re-encoded by ``hq_encoder``: ``z'``;
3. update: ``z_hat = (1 - g_i) * z_i + g_i * z'`` with the Kalman gain ``g_i`` (:mod:`vfsr_arch.kalman_filter`),
   computed once from the measured latents of the whole clip; the anchor keeps ``z_hat = z_0``;
4. decode: the transformer predicts codebook indices from ``z_hat``; the looked-up codes go through the generator,
   with CFT fusion of the skip features and cross-frame attention (CFA) to the previous frame's features.

Memory: the official ``forward`` encodes all frames at once and keeps every intermediate, ~380 MB more per 512x512
frame. Here frames are measured one at a time and only what the recurrence needs is kept (the latent, the CFT skip
features and the flow of each frame of the current chunk, ~8 MB per 512x512 frame), and :meth:`KEEP.step` /
:meth:`KEEP.restore_video` restore a video of any length in chunks of ``max_length`` frames with memory bounded by
``max_length``. Because the gain network attends over all frames of a chunk in both directions, a chunk's outputs
can only be produced once its last frame has been seen: the stream emits whole chunks (exactly what the official
``inference_keep.py`` computes with its 20-frame chunks, each restarting the anchor).

Keyword arguments and state-dict keys are the official ones (``jnjaby/KEEP``), so official option files and
checkpoints work unchanged. Deviations, all behaviour-preserving for inference: the channel and fuse-index tables
are derived from the configuration (the official code hard-codes the 512 ones); ``flow_type`` selects GMFlow
(official) or BasicSR's SpyNet; ``detach_16=False`` gives the straight-through estimator on ``z_hat`` (the official
code at f382730 mixes tensors of different shapes there); ``fix_modules`` also accepts the legacy names
``cft_dict``/``fuse_convs_dict``/``cross_fuse`` that official option files use.
"""
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import flow_warp
from basicsr.archs.spynet_arch import SpyNet
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from vfsr_arch.acceleration import float32_under_autocast
from vfsr_arch.codeformer_arch import CodePrediction, SFTFusionBlock, check_latent_size, check_resolution_lists
from vfsr_arch.cross_frame_attention import CrossFrameFusionLayer
from vfsr_arch.gmflow_arch import GMFlow
from vfsr_arch.kalman_filter import KalmanFilter
from vfsr_arch.vqgan_arch import (
    CODEFORMER_RELEASES,
    Encoder,
    Generator,
    VectorQuantizer,
    channels_per_resolution,
    encoder_fuse_indices,
    generator_fuse_indices,
)
from vfsr_io.checkpoint import load_network_weights

KEEP_RELEASES = 'https://github.com/jnjaby/KEEP/releases (KEEP-b76feb75.pth, KEEP_Asian-4765ebe0.pth)'
GMFLOW_RELEASES = 'https://github.com/haofeixu/gmflow (gmflow_sintel-0c07dcb3.pth, also in the KEEP releases)'
SPYNET_RELEASES = 'https://github.com/XPixelGroup/BasicSR/releases (spynet_sintel_final-3d2a1287.pth)'

# cft_list of each released checkpoint, to name the variant a checkpoint belongs to.
RELEASED_VARIANTS = {'KEEP': ['16', '32', '64'], 'KEEP-Asian': ['32', '64', '128', '256']}
# Submodule names used in official option files for modules that were renamed later in the official code.
LEGACY_MODULE_NAMES = {'cft_dict': 'cft', 'fuse_convs_dict': 'cft', 'cross_fuse': 'cfa'}


# ------------------------------------------------------------------------------------------------------------------
# Flow estimators: frames in [-1, 1] -> flow (b, 2, H, W) from `source` to `target`, in pixels (dx, dy), so that
# flow_warp(target_image, flow) aligns the target image with the source frame. Frozen, run without gradients.
# ------------------------------------------------------------------------------------------------------------------
class FrozenFlowEstimator(nn.Module):
    """A flow network (``model``) that is an input of KEEP, never trained: optional weights loaded strictly, no
    gradients, always in eval mode, and float32 under autocast: a flow in pixels of a 512 frame needs more than
    bf16's 8 bits, and in bf16 GMFlow's matching changed flows by ~1 px, which flipped most codes of the next frame
    (``benchmarks/bench_bf16_agreement.py``); it is ~22% of KEEP's work."""

    def __init__(self, model: nn.Module, weights_path, wrapper_keys: Sequence[str], published_at: str):
        super().__init__()
        self.model = model
        if weights_path is not None:
            load_network_weights(self.model, weights_path, wrapper_keys=wrapper_keys, published_at=published_at)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        """Always in eval mode (GMFlow's training mode only adds intermediate predictions)."""
        return super().train(False)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Flow from ``source`` to ``target`` frames (b, 3, H, W) -> (b, 2, H, W)."""
        return self.flow_between(self.frame_features(source), self.frame_features(target))

    def frame_features(self, frame: torch.Tensor):
        """What the estimator computes from one frame (b, 3, H, W) alone. A video computes it once per frame and
        hands it to :meth:`flow_between` twice: as the source of its flow, then as the target of the next one."""
        raise NotImplementedError

    def flow_between(self, source_features, target_features) -> torch.Tensor:
        """The flow (b, 2, H, W) between two frames given their :meth:`frame_features`."""
        raise NotImplementedError


class GMFlowEstimator(FrozenFlowEstimator):
    """The official ``FlowGenerator``: GMFlow (``model``) with one scale, 2x2 swin windows, global matching and
    global propagation. ``gmflow_kwargs`` (ours) sizes GMFlow; the official code always uses ``GMFlow()``."""

    def __init__(self, weights_path=None, gmflow_kwargs: Mapping | None = None):
        super().__init__(GMFlow(**(gmflow_kwargs or {})), weights_path, ('model',), GMFLOW_RELEASES)

    def _apply(self, fn, recurse=True):
        """Keep GMFlow's convolution weights contiguous when the network goes channels_last
        (``net.to(memory_format=torch.channels_last)``): its InstanceNorms run 4x slower on channels_last maps on the
        CPU, which made GMFlow 1.3x slower (docs/benchmarks.md); :meth:`frame_features` makes each frame contiguous
        instead."""
        super()._apply(fn, recurse)
        for parameter in self.parameters():
            parameter.data = parameter.data.contiguous()
        return self

    @torch.no_grad()
    @float32_under_autocast  # see FrozenFlowEstimator
    def frame_features(self, frame: torch.Tensor) -> list[torch.Tensor]:
        """GMFlow's backbone features (about a third of its work)."""
        # GMFlow takes [0, 255], contiguous (see _apply)
        return self.model.extract_features((frame.contiguous() + 1) / 2 * 255, attn_splits_list=[2])

    @torch.no_grad()
    @float32_under_autocast  # see FrozenFlowEstimator
    def flow_between(self, source_features: list[torch.Tensor], target_features: list[torch.Tensor]) -> torch.Tensor:
        return self.model.flow_from_features(source_features, target_features, attn_splits_list=[2],
                                             corr_radius_list=[-1], prop_radius_list=[-1])['flow_preds'][-1]


class SpyNetEstimator(FrozenFlowEstimator):
    """BasicSR's SpyNet (``model``) as a lighter flow estimator (not in the official checkpoints)."""

    def __init__(self, weights_path=None):
        super().__init__(SpyNet(load_path=None), weights_path, ('params',), SPYNET_RELEASES)

    def frame_features(self, frame: torch.Tensor) -> torch.Tensor:
        """The frame itself (SpyNet's pyramid is built inside)."""
        if min(frame.shape[-2:]) < 64:
            raise ValueError(f'SpyNet needs frames of at least 64x64 (5 pooling levels), got '
                             f'{tuple(frame.shape[-2:])}')
        return frame

    @torch.no_grad()
    @float32_under_autocast  # see FrozenFlowEstimator
    def flow_between(self, source_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        return self.model((source_features + 1) / 2, (target_features + 1) / 2)  # SpyNet takes [0, 1]


FLOW_ESTIMATORS = {'gmflow': GMFlowEstimator, 'spynet': SpyNetEstimator}


# ------------------------------------------------------------------------------------------------------------------
# Data passed between the stages
# ------------------------------------------------------------------------------------------------------------------
class FrameMeasurement(NamedTuple):
    """What KEEP keeps of one LQ frame until its chunk is restored."""
    latent: torch.Tensor  # z (b, emb_dim, h, w): the frame encoded by ``encoder``
    skips: dict[str, torch.Tensor]  # encoder features at the CFT resolutions, detached: {size: (b, C, s, s)}
    flow_to_previous: torch.Tensor | None  # (b, 2, H, W) flow from this frame to the previous one; None: anchor


class ChunkResult(NamedTuple):
    """Everything :meth:`KEEP.restore` computes for a chunk of n frames."""
    outputs: torch.Tensor  # (b, n, 3, H, W), not clamped (about [-1, 1])
    logits: torch.Tensor  # (b, n, h*w, codebook_size) code logits of z_hat
    gains: torch.Tensor  # (b, n, 1, h, w) Kalman gains (the anchor's is computed but not used)
    temporal_features: dict[str, torch.Tensor]  # generator features at temp_reg_list sizes: {size: (b, n, C, s, s)}


class KEEPTrainOutput(NamedTuple):
    """Training-mode result of :meth:`KEEP.forward` with ``early_feat=True``, in the official tuple order.

    * ``outputs`` (b, t, 3, H, W): restored frames (L1 / LPIPS / GAN losses);
    * ``logits`` (b*t, h*w, codebook_size): code logits of z_hat (cross-entropy with the HQ codes, stage 2);
    * ``lq_feat`` (b*t, emb_dim, h, w): the measured latents z before the Kalman update (code-feature MSE with the
      HQ codebook features, stage 2);
    * ``temporal_features`` {size: (b, t, C, s, s)}: generator features at ``temp_reg_list`` sizes, after CFT and
      CFA (temporal loss against flow-warped previous frames, stage 3).
    """
    outputs: torch.Tensor
    logits: torch.Tensor
    lq_feat: torch.Tensor
    temporal_features: dict[str, torch.Tensor]


@dataclass
class KEEPStreamState:
    """Between calls of :meth:`KEEP.step`: the measurements of the current, incomplete chunk and its last LQ frame.

    Official (``carry=False``): nothing outlives a chunk (each chunk restarts the anchor). With ``carry`` the
    recursion goes on across chunks: the last LQ frame, the last restored frame and the cross-frame attention
    memory are kept, so the next chunk's first frame is a Kalman update like every other (no seam every
    ``max_length`` frames). Either way the state never holds more than ``max_length`` frames' measurements,
    whatever the length of the video.
    """
    max_length: int
    need_upscale: bool
    measurements: list[FrameMeasurement] = field(default_factory=list)
    previous_frame: torch.Tensor | None = None
    # the flow estimator's frame_features of previous_frame: each frame goes through them once; None (e.g. in a
    # state saved without them): computed again from previous_frame, which gives the same numbers
    previous_flow_features: object = None
    carry: bool = False
    previous_output: torch.Tensor | None = None
    cfa_memory: dict[str, torch.Tensor] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes of tensor memory held by the state."""
        tensors = [] if self.previous_frame is None else [self.previous_frame]
        tensors += [leaf for leaf in torch.utils._pytree.tree_leaves(self.previous_flow_features)
                    if isinstance(leaf, torch.Tensor)]
        tensors += list(self.cfa_memory.values()) + ([] if self.previous_output is None else [self.previous_output])
        for measurement in self.measurements:
            tensors += [measurement.latent, *measurement.skips.values()]
            if measurement.flow_to_previous is not None:
                tensors.append(measurement.flow_to_previous)
        return sum(t.numel() * t.element_size() for t in tensors)


# ------------------------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------------------------
@ARCH_REGISTRY.register()
class KEEP(nn.Module, CodePrediction):
    """KEEP video face restoration. x (b, t, 3, H, W) RGB in [-1, 1], H = W = img_size (img_size / 4 with
    ``need_upscale``) -> (b, t, 3, img_size, img_size).

    Args (official names and defaults):
        img_size, nf, ch_mult, res_blocks, attn_resolutions, codebook_size, emb_dim, beta: the VQGAN.
        quantizer_type: must be 'nearest' (KEEP looks codes up in the codebook). ``gumbel_straight_through``,
            ``gumbel_kl_weight`` are accepted for option compatibility and unused, as ``cfa_nlayers``.
        vqgan_path: a stage-1 VQGAN checkpoint loaded into encoder, hq_encoder, quantize and generator.
        dim_embd, n_head, n_layers, latent_size: the code-prediction transformer (latent_size = h * w tokens).
        cft_list: resolutions (str) of the CFT fusion blocks ``cft``; cond: their fidelity weight w.
        cfa_list, cfa_nhead, cfa_dim, cross_residual: resolutions, heads, head width and residuals of the
            cross-frame attention layers ``cfa``.
        kalman_attn_head_dim, num_uncertainty_layers: the Kalman filter's uncertainty estimator (n_head heads).
        fix_modules: submodules frozen at construction (``flownet`` is always frozen).
        flownet_path: GMFlow (or SpyNet) weights for the flow estimator ``flownet``.
        temp_reg_list: resolutions whose generator features training returns for the temporal loss.
        mask_ratio: in training, the fraction of latent positions zeroed before the Kalman filter.
        flow_type (ours): 'gmflow' (official) or 'spynet'. flownet_kwargs (ours): GMFlow's constructor arguments.
    """

    def __init__(self, img_size: int = 512, nf: int = 64, ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
                 quantizer_type: str = 'nearest', res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,),
                 codebook_size: int = 1024, emb_dim: int = 256, beta: float = 0.25,
                 gumbel_straight_through: bool = False, gumbel_kl_weight: float = 1e-8, vqgan_path=None,
                 dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, latent_size: int = 256,
                 cft_list: Sequence[str] = ('32', '64', '128', '256'),
                 fix_modules: Sequence[str] | None = ('quantize', 'generator'), flownet_path=None,
                 kalman_attn_head_dim: int = 64, num_uncertainty_layers: int = 4, cond: float = 1,
                 cfa_list: Sequence[str] = (), cfa_nhead: int = 4, cfa_dim: int = 256, cfa_nlayers: int = 4,
                 cross_residual: bool = True, temp_reg_list: Sequence[str] = (), mask_ratio: float = 0.,
                 flow_type: str = 'gmflow', flownet_kwargs: Mapping | None = None):
        super().__init__()
        if quantizer_type != 'nearest':
            raise ValueError(f"KEEP looks codes up in a nearest-neighbour codebook: quantizer_type must be "
                             f"'nearest', got {quantizer_type!r}")
        if flow_type not in FLOW_ESTIMATORS:
            raise ValueError(f'flow_type must be one of {list(FLOW_ESTIMATORS)}, got {flow_type!r}')
        self.img_size = img_size
        self.emb_dim = emb_dim
        self.latent_grid = img_size // 2 ** (len(ch_mult) - 1)
        check_latent_size(latent_size, self.latent_grid, img_size, ch_mult)
        self.channels = channels_per_resolution(img_size, nf, ch_mult)
        self.fuse_encoder_block = encoder_fuse_indices(img_size, nf, ch_mult, res_blocks, attn_resolutions)
        self.fuse_generator_block = generator_fuse_indices(img_size, nf, ch_mult, res_blocks, attn_resolutions)
        check_resolution_lists(self.channels, cft_list=cft_list, cfa_list=cfa_list, temp_reg_list=temp_reg_list)
        self.cft_list = list(cft_list)
        self.cfa_list = list(cfa_list)
        self.temp_reg_list = list(temp_reg_list)
        self.cond = cond
        self.mask_ratio = mask_ratio

        flow_kwargs = {'weights_path': flownet_path}
        if flow_type == 'gmflow':
            flow_kwargs['gmflow_kwargs'] = flownet_kwargs
        self.flownet = FLOW_ESTIMATORS[flow_type](**flow_kwargs)
        self.kalman_filter = KalmanFilter(emb_dim, n_head, kalman_attn_head_dim, num_uncertainty_layers)
        vqgan = (img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim)
        self.hq_encoder = Encoder(*vqgan)
        self.encoder = Encoder(*vqgan)
        self.quantize = VectorQuantizer(codebook_size, emb_dim, beta)
        self.generator = Generator(*vqgan)
        if vqgan_path is not None:
            self._load_vqgan(vqgan_path)

        self.add_code_prediction(latent_size, emb_dim, dim_embd, n_head, n_layers, codebook_size)

        self.cfa = nn.ModuleDict({size: CrossFrameFusionLayer(self.channels[size], cfa_nhead, cfa_dim, cross_residual)
                                  for size in self.cfa_list})
        self.cft = nn.ModuleDict({size: SFTFusionBlock(self.channels[size], self.channels[size])
                                  for size in self.cft_list})
        for block in self.cft.values():  # official init: CFT starts as the identity
            for conv in block.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.zeros_(conv.weight)
                    nn.init.zeros_(conv.bias)

        self.freeze(fix_modules or ())

    # -------------------------------------------------------------------------------------------------- inference
    def forward(self, x: torch.Tensor, detach_16: bool = True, early_feat: bool = True, need_upscale: bool = True,
                max_length: int | None = None):
        """Restore a clip x (b, t, 3, H, W).

        Eval: returns the restored frames (b, t, 3, img_size, img_size), processing chunks of ``max_length``
        frames (default: the whole clip as one chunk, as the official ``forward``), each restarting the anchor.
        It runs exactly :meth:`step` frame after frame. A one-frame chunk is restored as its anchor, which is
        what the official inference gets by duplicating the frame and keeping the first output.

        Training (whole clip as one chunk, t >= 2): returns :class:`KEEPTrainOutput` ``(outputs, logits, lq_feat,
        temporal_features)`` if ``early_feat`` else ``(outputs, temporal_features)``, the official contract.
        ``detach_16`` stops gradients at the looked-up codes (official stage-2/3 setting); ``False`` passes the
        generator's gradient to z_hat (straight-through).

        ``need_upscale`` defaults to True here, the official ``forward`` contract that training relies on (LQ
        frames of img_size / 4, upsampled 4x inside), while :meth:`init_state` and :meth:`restore_video` default
        to False (inference feeds aligned faces already at img_size, as the official inference script does). With
        the same value, ``forward`` in eval equals the streaming steps.
        """
        self._check_clip(x)
        if self.training:
            return self._training_forward(x, detach_16, early_feat, need_upscale)
        state = self.init_state(max_length or x.shape[1], need_upscale)
        restored = []
        for index in range(x.shape[1]):
            outputs, state = self.step(x[:, index], state)
            restored.append(outputs)
        if state.measurements:
            restored.append(self.flush(state)[0])
        return torch.cat(restored, dim=1)

    def init_state(self, max_length: int = 20, need_upscale: bool = False, carry: bool = False) -> KEEPStreamState:
        """An empty stream state. Chunks of ``max_length`` frames (official inference: 20) are restored together;
        ``need_upscale`` upsamples each frame 4x (bilinear) first (default False: inference inputs are aligned
        faces at img_size; :meth:`forward` keeps the official training default True); ``carry`` continues the
        Kalman recursion from one chunk into the next instead of restarting at an anchor (see
        :class:`KEEPStreamState`)."""
        if max_length < 1:
            raise ValueError(f'max_length must be at least 1, got {max_length}')
        return KEEPStreamState(max_length, need_upscale, carry=carry)

    def step(self, frame: torch.Tensor, state: KEEPStreamState) -> tuple[torch.Tensor, KEEPStreamState]:
        """Feed one LQ frame (b, 3, H, W) of a video. Returns the restored frames that became ready, (b, k, 3,
        img_size, img_size): the whole chunk (k = max_length) when this frame completes it, else nothing (k = 0);
        and the new state. Call :meth:`flush` after the last frame."""
        frame = self._prepare_frame(frame, state.need_upscale)
        measurement, flow_features = self.measure_frame(frame, state.previous_frame, state.previous_flow_features)
        state = replace(state, measurements=state.measurements + [measurement], previous_frame=frame,
                        previous_flow_features=flow_features)
        if len(state.measurements) < state.max_length:
            return frame.new_zeros(frame.shape[0], 0, 3, self.img_size, self.img_size), state
        return self._restore_chunk(state)

    def flush(self, state: KEEPStreamState) -> tuple[torch.Tensor, KEEPStreamState]:
        """Restore the frames of the last, incomplete chunk: (b, k, 3, img_size, img_size), k possibly 0."""
        if not state.measurements:
            return torch.zeros(0, 0, 3, self.img_size, self.img_size, device=self.position_emb.device), state
        return self._restore_chunk(state)

    def _restore_chunk(self, state: KEEPStreamState) -> tuple[torch.Tensor, KEEPStreamState]:
        """Restore the chunk of ``state``; the next state restarts (official) or carries the recursion on."""
        if not state.carry:
            return self.restore(state.measurements).outputs, replace(state, measurements=[], previous_frame=None,
                                                                     previous_flow_features=None)
        cfa_memory = dict(state.cfa_memory)
        outputs = self.restore(state.measurements, previous_output=state.previous_output,
                               cfa_memory=cfa_memory).outputs
        return outputs, replace(state, measurements=[], previous_output=outputs[:, -1], cfa_memory=cfa_memory)

    @torch.no_grad()
    def restore_video(self, frames: Iterable[torch.Tensor], max_length: int = 20,
                      need_upscale: bool = False) -> Iterator[torch.Tensor]:
        """Restore a video, yielding its restored frames (b, 3, img_size, img_size) in order.

        ``frames``: an iterable of LQ frames (b, 3, H, W) in [-1, 1] (b videos side by side; a generator that
        reads them lazily keeps memory flat), or one clip tensor (b, T, 3, H, W). H = W = img_size, or
        img_size / 4 with ``need_upscale`` (default False, see :meth:`init_state`). Memory is bounded by
        ``max_length``, independent of the video length.
        """
        if isinstance(frames, torch.Tensor):
            if frames.dim() != 5:
                raise ValueError(f'restore_video takes a clip tensor (b, T, 3, H, W) or an iterable of frames (b, 3, '
                                 f'H, W), got a tensor of shape {tuple(frames.shape)}: for the T frames of one video '
                                 f'pass frames.unsqueeze(0) (a (T, 3, H, W) tensor would be read as T frames of 3 '
                                 f'channels each)')
            self._check_clip(frames)
            frames = frames.unbind(1)
        state = self.init_state(max_length, need_upscale)
        for frame in frames:
            restored, state = self.step(frame, state)
            yield from restored.unbind(1)
        yield from self.flush(state)[0].unbind(1)

    # ------------------------------------------------------------------------------------------ the four stages
    def measure_frame(self, frame: torch.Tensor, previous_frame: torch.Tensor | None,
                      previous_flow_features=None) -> tuple[FrameMeasurement, object]:
        """Encode a frame (b, 3, img_size, img_size) and estimate its flow to ``previous_frame`` (None: anchor).

        Returns the measurement and the frame's flow features (``flownet.frame_features``), which the next frame's
        call takes as ``previous_flow_features`` so that no frame goes through them twice; without them they are
        computed from ``previous_frame``."""
        skip_blocks = {size: self.fuse_encoder_block[size] for size in self.cft_list}
        latent, skips = self.encoder(frame, return_features_at=skip_blocks)
        flow_features, flow = self.flownet.frame_features(frame), None
        if previous_frame is not None:
            if previous_flow_features is None:
                previous_flow_features = self.flownet.frame_features(previous_frame)
            flow = self.flownet.flow_between(flow_features, previous_flow_features)
        return FrameMeasurement(latent, {size: feat.detach() for size, feat in skips.items()}, flow), flow_features

    def restore(self, measurements: Sequence[FrameMeasurement], detach_16: bool = True,
                previous_output: torch.Tensor | None = None,
                cfa_memory: dict[str, torch.Tensor] | None = None) -> ChunkResult:
        """Restore one chunk from the measurements of its frames. Its first frame is the anchor, unless
        ``previous_output`` (b, 3, H, W), the restored frame before the chunk, continues the recursion (then the
        first measurement has its flow to that frame); ``cfa_memory`` (updated in place) carries the cross-frame
        attention features across chunks the same way."""
        latents = torch.stack([measurement.latent for measurement in measurements], dim=1)  # (b, n, c, h, w)
        if self.training and self.mask_ratio > 0:
            latents = self._mask_latents(latents)
        gains = self.kalman_filter.gain(latents)
        outputs, logits, temporal_features = [], [], defaultdict(list)
        cfa_memory = {} if cfa_memory is None else cfa_memory
        for index, measurement in enumerate(measurements):
            previous = outputs[-1] if outputs else previous_output
            if previous is None:
                z_hat = latents[:, 0]
            else:
                # the previous output is an observation, not a path for gradients (official)
                warped = flow_warp(previous.detach(), measurement.flow_to_previous.permute(0, 2, 3, 1))
                z_hat = self.kalman_filter.update(latents[:, index], self.hq_encoder(warped), gains[:, index])
            frame_logits = self.code_logits(z_hat)
            codes = self.lookup_codes(frame_logits, z_hat, detach_16)
            outputs.append(self.decode(codes, measurement.skips, cfa_memory, temporal_features))
            logits.append(frame_logits)
        return ChunkResult(torch.stack(outputs, dim=1), torch.stack(logits, dim=1), gains,
                           {size: torch.stack(feats, dim=1) for size, feats in temporal_features.items()})

    def lookup_codes(self, logits: torch.Tensor, z_hat: torch.Tensor, detach_16: bool = True) -> torch.Tensor:
        """Top-1 codebook entries (b, emb_dim, h, w) of the logits (argmax = the official top-1 of the softmax)."""
        b, _, h, w = z_hat.shape
        codes = self.quantize.get_codebook_feat(logits.argmax(dim=2), (b, h, w, self.emb_dim))
        return codes.detach() if detach_16 else z_hat + (codes - z_hat).detach()

    def decode(self, codes: torch.Tensor, skips: Mapping[str, torch.Tensor], cfa_memory: dict[str, torch.Tensor],
               temporal_features: dict[str, list] | None = None) -> torch.Tensor:
        """Generator with, after the block of each resolution: CFT fusion of the skip feature, then cross-frame
        attention to the previous frame's feature in ``cfa_memory`` (updated in place; the anchor only stores),
        then collection of the temporal-loss features. codes (b, emb_dim, h, w) -> image (b, 3, H, W)."""
        def fuse(size: str, x: torch.Tensor) -> torch.Tensor:
            if size in self.cft:
                x = self.cft[size](skips[size], x, self.cond)
            if size in self.cfa:
                if size in cfa_memory:
                    x = self.cfa[size](x, cfa_memory[size])
                cfa_memory[size] = x
            if temporal_features is not None and size in self.temp_reg_list:
                temporal_features[size].append(x)
            return x

        sizes = set(self.cft_list) | set(self.cfa_list) | set(self.temp_reg_list)
        return self.generator(codes, fuse_at={size: self.fuse_generator_block[size] for size in sizes}, fuse=fuse)

    # ------------------------------------------------------------------------------------------------- training
    def _training_forward(self, x, detach_16, early_feat, need_upscale):
        if x.shape[1] < 2:
            raise ValueError(f'KEEP trains on clips of at least 2 frames (the Kalman update needs a previous '
                             f'frame), got {x.shape[1]}')
        measurements, previous, flow_features = [], None, None
        for index in range(x.shape[1]):
            frame = self._prepare_frame(x[:, index], need_upscale)
            measurement, flow_features = self.measure_frame(frame, previous, flow_features)
            measurements.append(measurement)
            previous = frame
        result = self.restore(measurements, detach_16)
        if not early_feat:
            return result.outputs, result.temporal_features
        lq_feat = torch.stack([measurement.latent for measurement in measurements], dim=1).flatten(0, 1)
        return KEEPTrainOutput(result.outputs, result.logits.flatten(0, 1), lq_feat, result.temporal_features)

    def _mask_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Zero a random ``mask_ratio`` of the positions of each frame's latent (official training augmentation)."""
        b, t, _, h, w = latents.shape
        num_kept = int(h * w * (1 - self.mask_ratio))
        kept = torch.rand(b, t, h * w, device=latents.device).topk(num_kept, dim=2).indices
        mask = torch.zeros(b, t, h * w, dtype=latents.dtype, device=latents.device).scatter_(2, kept, 1)
        return latents * mask.view(b, t, 1, h, w)

    def freeze(self, module_names: Iterable[str]) -> None:
        """Freeze the named submodules (official ``fix_modules``; legacy names accepted)."""
        for name in module_names:
            name = LEGACY_MODULE_NAMES.get(name, name)
            if not hasattr(self, name):
                raise ValueError(f'fix_modules: KEEP has no submodule {name!r}; choose from '
                                 f'{[n for n, _ in self.named_children()] + ["position_emb"]}')
            getattr(self, name).requires_grad_(False)

    # ---------------------------------------------------------------------------------------------- checkpoints
    def load_checkpoint(self, path) -> None:
        """Load an official (or vfsr) KEEP checkpoint with ``strict=True``: a state_dict, possibly under
        ``params_ema`` / ``params`` / ``model``. Never downloads; a missing file names where to get it."""
        load_network_weights(self, path, wrapper_keys=('params_ema', 'params', 'model'), published_at=KEEP_RELEASES,
                             what='KEEP checkpoint')

    def checkpoint_configuration_hint(self, state_dict: Mapping[str, torch.Tensor]) -> str | None:
        """For :mod:`vfsr_io.checkpoint`: the ``cft_list`` / ``cfa_list`` a KEEP checkpoint needs (e.g. KEEP vs
        KEEP-Asian), or None when those agree or the file is not a KEEP checkpoint at all."""
        if not any(key.startswith('kalman_filter.') for key in state_dict):
            return None
        changes = []
        for option, built in (('cft_list', self.cft_list), ('cfa_list', self.cfa_list)):
            prefix = option[:3] + '.'
            in_file = sorted({key.split('.')[1] for key in state_dict if key.startswith(prefix)}, key=int)
            if in_file != sorted(built, key=int):
                variant = next((f' (the released {name})' for name, sizes in RELEASED_VARIANTS.items()
                                if option == 'cft_list' and sorted(sizes, key=int) == in_file), '')
                changes.append(f'{option}: {in_file}{variant} instead of {sorted(built, key=int)}')
        return f'build the network with {"; ".join(changes)}' if changes else None

    def _load_vqgan(self, path) -> None:
        """Load a stage-1 VQAutoEncoder checkpoint: its encoder into ``encoder`` and ``hq_encoder``, its quantizer
        and generator."""
        vqgan = nn.Module()
        vqgan.encoder, vqgan.quantize, vqgan.generator = self.encoder, self.quantize, self.generator
        load_network_weights(vqgan, path, published_at=f'{CODEFORMER_RELEASES} (vqgan_code1024.pth), or train stage 1',
                             what='vqgan_path')
        self.hq_encoder.load_state_dict(self.encoder.state_dict())

    # ----------------------------------------------------------------------------------------------- validation
    def _check_clip(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f'KEEP takes clips (b, t, 3, H, W), got shape {tuple(x.shape)}')
        if x.shape[1] < 1:
            raise ValueError('KEEP got a clip with no frames')

    def _prepare_frame(self, frame: torch.Tensor, need_upscale: bool) -> torch.Tensor:
        """Check the frame size (the position embedding fixes it) and upsample 4x if asked."""
        expected = self.img_size // 4 if need_upscale else self.img_size
        if frame.dim() != 4 or frame.shape[1] != 3 or tuple(frame.shape[-2:]) != (expected, expected):
            scale = ' before the 4x upscale (need_upscale=True)' if need_upscale else ''
            raise ValueError(f'KEEP restores {self.img_size}x{self.img_size} aligned faces: frames must be (b, 3, '
                             f'{expected}, {expected}){scale}, got {tuple(frame.shape)}')
        if need_upscale:
            frame = F.interpolate(frame, scale_factor=4, mode='bilinear', align_corners=False)
        return frame
