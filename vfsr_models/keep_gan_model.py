"""KEEP stage 3: fine-tune the CFT skip fusions and the cross-frame attention (CFA) adversarially.

Everything else is frozen (``network_g.fix_modules``). Generator loss: ``pixel_opt`` (L1 0.1) + ``perceptual_opt``
(LPIPS 1) + ``temporal_opt`` (Charbonnier 0.1 between the generator features of frame i and those of frame i-1
warped by the flow of the GT frames, ``temporal_warp_type: GT``) + ``gan_opt`` (hinge, 0.01) from a 3D-convolution
video discriminator (``network_d: Discriminator3D``) that judges whole clips. The discriminator trains on real GT
clips against the restored clips in every iteration after ``train.net_d_start_iter``; the generator steps every
``net_d_iters`` iterations after ``net_g_start_iter``.
"""
from collections import OrderedDict

from basicsr.utils.registry import MODEL_REGISTRY

from vfsr_models.keep_model import KEEPModel


@MODEL_REGISTRY.register()
class KEEPGANModel(KEEPModel):
    """:class:`KEEPModel` plus a video discriminator and its adversarial loss."""

    def define_losses(self, train_opt):
        super().define_losses(train_opt)
        if self.net_d is None:
            raise ValueError('KEEPGANModel needs network_d (the official one is Discriminator3D)')
        self.cri_gan = self.build_optional_loss(train_opt, 'gan_opt')
        if self.cri_gan is None:
            raise ValueError('KEEPGANModel needs train.gan_opt (the official setting is gan_type hinge, weight 0.01)')

    def optimize_parameters(self, current_iter):
        loss_dict = OrderedDict()
        self.set_discriminator_trainable(False)
        self.optimizer_g.zero_grad()
        generator_outputs = self.run_generator()
        if self.generator_step_due(current_iter):
            l_g_total = self.generator_losses(*generator_outputs, loss_dict)
            if self.adversarial_due(current_iter):
                loss_dict['l_g_gan'] = self.cri_gan(self.net_d(self.output), True, is_disc=False)
                l_g_total = l_g_total + loss_dict['l_g_gan']
            l_g_total.backward()
            self.optimizer_g.step()
        if self.adversarial_due(current_iter):
            self.optimize_discriminator(self.gt, self.output, loss_dict)
        self.finish_iteration(loss_dict)
