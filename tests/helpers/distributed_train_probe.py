"""Run ``train.py``'s pipeline under torchrun and save each rank's network before and after training.

BasicSR keeps the model inside ``train_pipeline``; this probe records it as ``build_model`` returns it, so the test
can compare the ranks' weights: ``VFSR_PROBE_OUT=DIR torchrun --nproc_per_node=2 probe.py -opt X --launcher pytorch``
(the folder comes by environment because the old launcher puts ``--local-rank`` first on the command line).
"""
import os

import vfsr_compat  # noqa: F401

import basicsr.train
import torch

from vfsr_cli import run

out_dir = os.environ['VFSR_PROBE_OUT']
built_models = []


def build_and_record(opt):
    model = original_build_model(opt)
    built_models.append(model)
    state = model.get_bare_model(model.net_g).state_dict()
    torch.save({k: v.clone() for k, v in state.items()}, os.path.join(out_dir, f'initial_rank{opt["rank"]}.pth'))
    return model


original_build_model = basicsr.train.build_model
basicsr.train.build_model = build_and_record
run(os.getcwd(), is_train=True)
model = built_models[0]
rank = model.opt['rank']
torch.save(model.get_bare_model(model.net_g).state_dict(), os.path.join(out_dir, f'final_rank{rank}.pth'))
