"""KEEP stage 1: train the VQGAN autoencoder (codebook, encoder, generator) on single HQ face frames.

Generator loss, as CodeFormer's and KEEP's ``VQGANModel``:
``L1 + LPIPS + d_weight * hinge_GAN + codebook_weight * quantiser_loss``, where the adaptive weight
``d_weight = disc_weight * clamp(|grad_last L_rec| / (|grad_last L_GAN| + 1e-4), 0, 1)`` balances the two
gradients at the generator's last layer (taming-transformers), and the GAN term starts after
``train.net_d_start_iter``. The discriminator is a 2D patch discriminator (``network_d: VQGANDiscriminator``).
"""
from collections import OrderedDict

import torch
from basicsr.utils.registry import MODEL_REGISTRY

from vfsr_models.generator_training import GeneratorTrainingModel


@MODEL_REGISTRY.register()
class VQGANModel(GeneratorTrainingModel):
    """Options under ``train``: ``pixel_opt``, ``perceptual_opt``, ``gan_opt`` (hinge), ``codebook_opt.loss_weight``
    (default 1), ``disc_weight`` (default 0.8, the taming setting the official code uses), ``ema_decay``."""

    def feed_data(self, data):
        self.gt = data['gt'].to(self.device)

    def define_losses(self, train_opt):
        if self.net_d is None:
            raise ValueError('VQGANModel needs network_d (e.g. VQGANDiscriminator)')
        self.cri_pix = self.build_optional_loss(train_opt, 'pixel_opt')
        self.cri_perceptual = self.build_optional_loss(train_opt, 'perceptual_opt')
        self.cri_gan = self.build_optional_loss(train_opt, 'gan_opt')
        if self.cri_gan is None:
            raise ValueError('VQGANModel needs train.gan_opt (the official setting is gan_type hinge)')
        self.codebook_weight = (train_opt.get('codebook_opt') or {}).get('loss_weight', 1.0)
        self.disc_weight = train_opt.get('disc_weight', 0.8)

    def adaptive_gan_weight(self, recon_loss, gan_loss):
        """Ratio of the gradient norms of the reconstruction and GAN losses at the generator's last conv."""
        last_layer = self.get_bare_model(self.net_g).generator.blocks[-1].weight
        recon_grad = torch.autograd.grad(recon_loss, last_layer, retain_graph=True)[0]
        gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
        return (recon_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, 1.0).detach() * self.disc_weight

    def optimize_parameters(self, current_iter):
        loss_dict = OrderedDict()
        self.set_discriminator_trainable(False)
        self.optimizer_g.zero_grad()
        self.output, l_codebook, quant_stats = self.net_g(self.gt)

        if self.generator_step_due(current_iter):
            l_g_total = 0
            if self.cri_pix:
                loss_dict['l_g_pix'] = self.cri_pix(self.output, self.gt)
                l_g_total = l_g_total + loss_dict['l_g_pix']
            if self.cri_perceptual:
                loss_dict['l_g_percep'] = self.cri_perceptual(self.output, self.gt)
                l_g_total = l_g_total + loss_dict['l_g_percep']
            if self.adversarial_due(current_iter):
                l_g_gan = self.cri_gan(self.net_d(self.output), True, is_disc=False)
                # Without a reconstruction loss there is nothing to balance against: the GAN term is unscaled.
                d_weight = self.adaptive_gan_weight(l_g_total, l_g_gan) if torch.is_tensor(l_g_total) else 1.0
                loss_dict['l_g_gan'] = d_weight * l_g_gan
                l_g_total = l_g_total + loss_dict['l_g_gan']
            loss_dict['l_codebook'] = l_codebook * self.codebook_weight
            l_g_total = l_g_total + loss_dict['l_codebook']
            l_g_total.backward()
            self.optimizer_g.step()

        if self.adversarial_due(current_iter):
            self.optimize_discriminator(self.gt, self.output, loss_dict)
        if 'perplexity' in quant_stats:
            loss_dict['codebook_perplexity'] = quant_stats['perplexity'].detach()
        self.finish_iteration(loss_dict)

    def restore(self, net):
        return net(self.gt)[0]
