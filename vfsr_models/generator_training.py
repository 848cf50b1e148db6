"""What KEEP's three training stages share: a generator with EMA, an optional discriminator, losses from options,
and validation of restored clips (any metric of ``vfsr_eval`` or BasicSR, per clip then averaged, on CPU or GPU,
single process or distributed).

:class:`GeneratorTrainingModel` is the base of ``VQGANModel`` (stage 1), ``KEEPModel`` (stage 2) and
``KEEPGANModel`` (stage 3). It is not registered: each stage is its own registered model. ``VidFaceModel`` (a
BasicSR ``SRModel``) shares :func:`evaluate_generator` with it.

Options it reads (besides BasicSR's usual ones):
* ``path.pretrain_network_g`` / ``param_key_g`` / ``strict_load_g``, ``path.pretrain_network_d`` / ``param_key_d`` /
  ``strict_load_d``;
* ``train.ema_decay`` (0 disables EMA), ``train.optim_g`` / ``train.optim_d``, ``train.autocast`` (``bf16``),
  ``train.compile``;
* ``train.net_g_start_iter`` / ``net_d_iters`` / ``net_d_start_iter`` for the adversarial schedule;
* ``val.metrics`` (e.g. ``calculate_psnr`` with ``test_y_channel`` true and false), ``val.save_img``.
"""
from collections import OrderedDict
from copy import deepcopy
from os import path as osp

import torch
import torch.distributed as dist
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger, imwrite, tensor2img

from vfsr_arch.acceleration import compile_network
from vfsr_eval.clip_scoring import average_over_clips, score_clip
from vfsr_eval.metrics_file import write_metrics_file


class GeneratorTrainingModel(BaseModel):
    """A generator ``net_g`` (and ``net_g_ema``), optionally a discriminator ``net_d``, trained from options.

    Images and clips are RGB in [-1, 1], as the official KEEP data options give them (``normalize: true``).
    """

    def __init__(self, opt):
        for phase, dataset_opt in (opt.get('datasets') or {}).items():
            if not dataset_opt.get('normalize', False):
                raise ValueError(f'{type(self).__name__} works on images in [-1, 1]: set datasets.{phase}.normalize: '
                                 'true')
        super().__init__(opt)
        self.net_g = self.model_to_device(build_network(opt['network_g']))
        self.print_network(self.net_g)
        path_opt = opt['path']
        if path_opt.get('pretrain_network_g'):
            self.load_network(self.net_g, path_opt['pretrain_network_g'], path_opt.get('strict_load_g', True),
                              path_opt.get('param_key_g', 'params'))
        if self.is_train:
            self.init_training_settings()

    def feed_data(self, data):
        """``lq`` and, where the data has it, ``gt`` (b, [t,] 3, H, W) on the model's device."""
        self.lq = data['lq'].to(self.device)
        self.gt = data['gt'].to(self.device) if 'gt' in data else None

    # ------------------------------------------------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------------------------------------------------
    def init_training_settings(self):
        train_opt = self.opt['train']
        self.net_g.train()
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            # The EMA copy starts from the loaded generator; it is only evaluated and saved, never wrapped in DDP.
            self.net_g_ema = deepcopy(self.get_bare_model(self.net_g)).requires_grad_(False).eval()
            get_root_logger().info(f'Exponential moving average of net_g with decay {self.ema_decay}')

        self.net_d = None
        if self.opt.get('network_d'):
            self.net_d = self.model_to_device(build_network(self.opt['network_d']))
            self.print_network(self.net_d)
            path_opt = self.opt['path']
            if path_opt.get('pretrain_network_d'):
                self.load_network(self.net_d, path_opt['pretrain_network_d'], path_opt.get('strict_load_d', True),
                                  path_opt.get('param_key_d', 'params'))
            self.net_d.train()
        self.net_g_start_iter = train_opt.get('net_g_start_iter', 0)
        self.net_d_iters = train_opt.get('net_d_iters', 1)
        self.net_d_start_iter = train_opt.get('net_d_start_iter', 0)

        self.define_losses(train_opt)
        self.setup_optimizers()
        self.setup_schedulers()
        # train.compile: torch.compile the generator's submodules (after the eager EMA copy; warns and stays eager
        # where it cannot compile)
        compile_network(self.get_bare_model(self.net_g), train_opt.get('compile', False))

    def define_losses(self, train_opt):
        """Build the stage's criteria (``self.cri_*``) from ``train_opt``."""
        raise NotImplementedError

    def build_optional_loss(self, train_opt, name):
        """The loss ``train_opt[name]`` on the model's device, or None when the option is absent."""
        return build_loss(train_opt[name]).to(self.device) if train_opt.get(name) else None

    def setup_optimizers(self):
        train_opt = self.opt['train']
        trainable = [(name, p) for name, p in self.net_g.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError('network_g has no trainable parameter: check network_g.fix_modules')
        frozen = sum(p.numel() for p in self.net_g.parameters() if not p.requires_grad)
        get_root_logger().info(f'net_g: {sum(p.numel() for _, p in trainable):,d} trainable parameters in '
                               f'{len(trainable)} tensors, {frozen:,d} frozen')
        optim_opt = deepcopy(train_opt['optim_g'])
        self.optimizer_g = self.get_optimizer(optim_opt.pop('type'), [p for _, p in trainable], **optim_opt)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_opt = deepcopy(train_opt['optim_d'])
            self.optimizer_d = self.get_optimizer(optim_opt.pop('type'), self.net_d.parameters(), **optim_opt)
            self.optimizers.append(self.optimizer_d)

    # ------------------------------------------------------------------------------------------------------------
    # Adversarial schedule (as in CodeFormer's and KEEP's GAN models)
    # ------------------------------------------------------------------------------------------------------------
    def generator_step_due(self, current_iter) -> bool:
        return current_iter % self.net_d_iters == 0 and current_iter > self.net_g_start_iter

    def adversarial_due(self, current_iter) -> bool:
        return self.net_d is not None and current_iter > self.net_d_start_iter

    def set_discriminator_trainable(self, trainable: bool):
        for p in self.net_d.parameters():
            p.requires_grad = trainable

    def optimize_discriminator(self, real, fake, loss_dict):
        """One hinge (or other ``gan_opt``) step of ``net_d`` on real vs detached fake samples."""
        self.set_discriminator_trainable(True)
        self.optimizer_d.zero_grad()
        real_pred = self.net_d(real)
        l_d_real = self.cri_gan(real_pred, True, is_disc=True)
        fake_pred = self.net_d(fake.detach())
        l_d_fake = self.cri_gan(fake_pred, False, is_disc=True)
        (l_d_real + l_d_fake).backward()
        self.optimizer_d.step()
        loss_dict['l_d_real'] = l_d_real
        loss_dict['l_d_fake'] = l_d_fake
        loss_dict['out_d_real'] = real_pred.detach().mean()
        loss_dict['out_d_fake'] = fake_pred.detach().mean()

    def model_ema(self, decay=0.999):
        """EMA of the trainable parameters. Frozen ones were copied once and stay bit-identical (averaging a
        constant with itself is not exact in floating point)."""
        ema_params = dict(self.net_g_ema.named_parameters())
        for name, param in self.get_bare_model(self.net_g).named_parameters():
            if param.requires_grad:
                ema_params[name].data.mul_(decay).add_(param.data, alpha=1 - decay)

    def finish_iteration(self, loss_dict):
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        self.log_dict = self.reduce_loss_dict(loss_dict)

    # ------------------------------------------------------------------------------------------------------------
    # Inference and validation
    # ------------------------------------------------------------------------------------------------------------
    def restore(self, net):
        """The output of ``net`` (already in eval mode, under no_grad) for the sample given to ``feed_data``."""
        raise NotImplementedError

    def test(self):
        self.output = evaluate_generator(self, self.restore)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Every rank restores its share of the clips (clip i goes to rank i mod world size) and scores each clip
        with :func:`vfsr_eval.clip_scoring.score_clip` (frame metrics: mean over the clip's frames; clip metrics
        such as ``calculate_sigma_ids`` or ``calculate_warping_error``: computed on the whole clip). Rank 0 logs the
        mean over clips and writes every clip's scores to ``<log folder>/metrics_<dataset>.json``."""
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        dataset_name = dataloader.dataset.opt['name']
        metric_opts = self.opt['val'].get('metrics') or {}
        logger = get_root_logger()
        clip_scores = []
        for index, data in enumerate(dataloader):
            if index % world_size != rank:
                continue
            self.feed_data(data)
            self.test()
            clip_name = self.clip_name(data, index)
            frames = [tensor2img([frame], min_max=(-1, 1)) for frame in as_frames(self.output.detach().cpu())[0]]
            references = None
            if self.gt is not None:
                references = [tensor2img([frame], min_max=(-1, 1)) for frame in as_frames(self.gt.detach().cpu())[0]]
            if save_img:
                for frame_index, image in enumerate(frames):
                    imwrite(image, osp.join(self.opt['path']['visualization'], dataset_name, clip_name,
                                            f'{frame_index:08d}_{current_iter}.png'))
            if metric_opts:
                scores = score_clip(frames, references, metric_opts, clip_name)
                clip_scores.append(scores)
                logger.info(f'Validation {dataset_name} {clip_name}: ' + ', '.join(
                    f'{name} {value:.4f}' for name, value in scores.values.items()))
        if world_size > 1:
            gathered = [None] * world_size
            dist.all_gather_object(gathered, clip_scores)
            clip_scores = [scores for rank_scores in gathered for scores in rank_scores]
        if clip_scores and rank == 0:
            self._initialize_best_metric_results(dataset_name)
            self.metric_results = {name: value['mean'] for name, value in average_over_clips(clip_scores).items()}
            for name, value in self.metric_results.items():
                self._update_best_metric_result(dataset_name, name, value, current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
            write_metrics_file(self.opt['path']['log'], dataset_name, current_iter, clip_scores)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.dist_validation(dataloader, current_iter, tb_logger, save_img)

    @staticmethod
    def clip_name(data, index) -> str:
        for key in ('folder', 'clip_name', 'key', 'gt_path', 'lq_path'):
            if key in data:
                value = data[key][0] if isinstance(data[key], (list, tuple)) else data[key]
                return osp.splitext(str(value).replace(osp.sep, '_'))[0]
        return f'{index:06d}'

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        log_str = f'Validation {dataset_name} (mean over clips of the per-clip mean over frames)\n'
        for metric, value in self.metric_results.items():
            best = self.best_metric_results[dataset_name][metric]
            log_str += f'\t # {metric}: {value:.4f}\tBest: {best["val"]:.4f} @ {best["iter"]} iter\n'
            if tb_logger:
                tb_logger.add_scalar(f'metrics/{dataset_name}/{metric}', value, current_iter)
        get_root_logger().info(log_str)

    def get_current_visuals(self):
        visuals = OrderedDict(result=self.output.detach().cpu())
        if self.gt is not None:
            visuals['gt'] = self.gt.detach().cpu()
        return visuals

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------------------------------
    def save(self, epoch, current_iter):
        if self.ema_decay > 0:
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)


def evaluate_generator(model: BaseModel, forward):
    """``forward(net)`` under no_grad, with ``net`` the model's ``net_g_ema`` when it has one, else its bare
    ``net_g`` (validation may run on one rank only, where a DDP wrapper would wait for the others), in eval mode; the
    network's train/eval mode is restored afterwards."""
    net = model.net_g_ema if hasattr(model, 'net_g_ema') else model.get_bare_model(model.net_g)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        output = forward(net)
    net.train(was_training)
    return output


def as_frames(batch: torch.Tensor) -> torch.Tensor:
    """(b, 3, h, w) images or (b, t, 3, h, w) clips -> (b, t, 3, h, w)."""
    return batch.unsqueeze(1) if batch.dim() == 4 else batch
