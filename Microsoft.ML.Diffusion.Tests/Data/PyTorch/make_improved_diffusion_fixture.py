#!/usr/bin/env python3
"""Writes the improved-diffusion fixtures of ImprovedDiffusionCheckpointTests. Run once; the tests need no Python.

    git -C /work/.mirror/openai+improved-diffusion/repo archive HEAD | tar -x -C /tmp/improved-diffusion
    /usr/bin/python3 make_improved_diffusion_fixture.py --reference /tmp/improved-diffusion

The reference is openai/improved-diffusion's own source (its improved_diffusion package, imported from --reference; only
unet.py, nn.py, fp16_util.py, gaussian_diffusion.py, losses.py, respace.py and script_util.py are used). Needs torch
(Debian's python3-torch 1.13 was used) and numpy.

Writes, beside this script:
  improved-diffusion-a-fp16.pt  state dict, in float16, of a tiny class-conditional UNetModel with learned sigmas and
                                scale-shift norm (its reference outputs are computed in float32 from the same values)
  improved-diffusion-b.pt       state dict (float32) of a tiny unconditional UNetModel without scale-shift norm, 1 head
  improved-diffusion-reference.pt  a dict of tensors: the fixed inputs, the networks' outputs, the first steps of the
                                reference's samplers (see the keys below), and readme_flags (the flags its README gives
                                for the published checkpoints, UTF-8 bytes, one set a line) with readme_counts (the
                                parameter counts of the models its create_model builds from them)
"""
import argparse
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

# Flags of the published checkpoints, as improved-diffusion's README gives them (MODEL_FLAGS and DIFFUSION_FLAGS).
README_FLAGS = [
    "--image_size 64 --num_channels 128 --num_res_blocks 3 --learn_sigma True --diffusion_steps 4000 --noise_schedule cosine",
    "--image_size 32 --num_channels 128 --num_res_blocks 3 --learn_sigma True --dropout 0.3 --diffusion_steps 4000 --noise_schedule cosine",
    "--image_size 64 --num_channels 192 --num_res_blocks 3 --learn_sigma True --class_cond True --diffusion_steps 4000 "
    "--noise_schedule cosine --rescale_learned_sigmas False --rescale_timesteps False",
    "--image_size 256 --num_channels 128 --num_res_blocks 2 --num_heads 1 --learn_sigma True --use_scale_shift_norm False "
    "--attention_resolutions 16 --diffusion_steps 1000 --noise_schedule linear --rescale_learned_sigmas False --rescale_timesteps False",
]


def randomize(model, generator):
    """Random weights everywhere (the reference zero-initialises its output layers, which would make every output 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            is_norm_scale = p.dim() == 1 and name.endswith('weight')  # only group norms have 1-D weights
            p.copy_(1 + 0.1 * noise if is_norm_scale else 0.1 * noise)


def first_steps(diffusion, model, x, t, noise, kwargs, prefix, out):
    """The reference's p_sample and ddim_sample (η = 0) at (x, t) with the given noise, p_mean_variance's parts, and the
    network's output for the timestep the sampler gives it (mapped and rescaled)."""
    import improved_diffusion.gaussian_diffusion as gd
    original = gd.th.randn_like
    gd.th.randn_like = lambda like: noise.clone()
    try:
        with torch.no_grad():
            pmv = diffusion.p_mean_variance(model, x, t, clip_denoised=True, model_kwargs=kwargs)
            ddpm = diffusion.p_sample(model, x, t, clip_denoised=True, model_kwargs=kwargs)
            ddim = diffusion.ddim_sample(model, x, t, clip_denoised=True, model_kwargs=kwargs, eta=0.0)
    finally:
        gd.th.randn_like = original
    with torch.no_grad():
        out[prefix + '_model_output'] = diffusion._wrap_model(model)(x, t, **kwargs).float()
    out[prefix + '_t'] = t
    out[prefix + '_mean'] = pmv['mean'].float()
    out[prefix + '_log_variance'] = pmv['log_variance'].float().expand_as(x).contiguous()
    out[prefix + '_pred_xstart'] = pmv['pred_xstart'].float()
    out[prefix + '_ddpm_sample'] = ddpm['sample'].float()
    out[prefix + '_ddim_sample'] = ddim['sample'].float()
    out[prefix + '_timestep_map'] = torch.tensor(diffusion.timestep_map, dtype=torch.int64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reference', required=True, help='a directory holding the improved_diffusion package')
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    from improved_diffusion.unet import UNetModel
    from improved_diffusion.script_util import create_gaussian_diffusion, create_model, model_and_diffusion_defaults

    generator = torch.Generator().manual_seed(2026)
    out = {}

    # Model A: 8×8 RGB, widths 32 and 64, attention at 4×4 (downsampling rate 2), 2 heads, 3 classes, learned sigmas,
    # scale-shift norm. Diffusion: cosine, 40 steps, respaced to 10, timesteps rescaled to 1000/40 (their default).
    a = UNetModel(in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1, attention_resolutions=(2,),
                  dropout=0.0, channel_mult=(1, 2), num_classes=3, num_heads=2, use_scale_shift_norm=True).eval()
    randomize(a, generator)
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(p.half().float())  # the file holds float16 values; the reference computes with them in float32
    # Model B: widths 32 and 32 (keeps the file under 2 MB), unconditional, 3 outputs, 1 head, no scale-shift norm.
    b = UNetModel(in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1, attention_resolutions=(2,),
                  dropout=0.0, channel_mult=(1, 1), num_classes=None, num_heads=1, use_scale_shift_norm=False).eval()
    randomize(b, generator)

    x = torch.randn(3, 3, 8, 8, generator=generator)
    noise = torch.randn(3, 3, 8, 8, generator=generator)
    y = torch.tensor([0, 2, 1])
    t = torch.tensor([0, 17, 39])
    out['x'], out['noise'], out['y'], out['t'] = x, noise, y, t
    with torch.no_grad():
        out['a_output'] = a(x, t, y=y)
        out['b_output'] = b(x, t)

    spaced_a = create_gaussian_diffusion(steps=40, learn_sigma=True, noise_schedule='cosine', rescale_timesteps=True,
                                         timestep_respacing='10')
    last = torch.full((3,), len(spaced_a.timestep_map) - 1, dtype=torch.int64)
    first_steps(spaced_a, a, x, last, noise, dict(y=y), 'a', out)
    first_steps(spaced_a, a, x, torch.full((3,), 5, dtype=torch.int64), noise, dict(y=y), 'amid', out)
    out['a_betas'] = torch.tensor(spaced_a.betas, dtype=torch.float64)

    full_b = create_gaussian_diffusion(steps=50, learn_sigma=False, noise_schedule='linear', predict_xstart=True,
                                       rescale_timesteps=False, timestep_respacing='')
    first_steps(full_b, b, x, torch.full((3,), 49, dtype=torch.int64), noise, {}, 'b', out)
    first_steps(full_b, b, x, torch.full((3,), 20, dtype=torch.int64), noise, {}, 'bmid', out)
    out['b_betas'] = torch.tensor(full_b.betas, dtype=torch.float64)
    ddim_b = create_gaussian_diffusion(steps=50, learn_sigma=False, noise_schedule='linear', predict_xstart=True,
                                       rescale_timesteps=False, timestep_respacing='ddim10')
    first_steps(ddim_b, b, x, torch.full((3,), 9, dtype=torch.int64), noise, {}, 'bddim', out)

    torch.save({k: v.half() for k, v in a.state_dict().items()}, HERE / 'improved-diffusion-a-fp16.pt')
    torch.save(b.state_dict(), HERE / 'improved-diffusion-b.pt')
    defaults = model_and_diffusion_defaults()
    counts = []
    for flags in README_FLAGS:
        settings = dict(defaults)
        words = flags.split()
        for name, value in zip(words[::2], words[1::2]):
            key = name[2:]
            kind = type(defaults[key])
            settings[key] = (value == 'True') if kind is bool else kind(value)
        model = create_model(settings['image_size'], settings['num_channels'], settings['num_res_blocks'],
                             learn_sigma=settings['learn_sigma'], class_cond=settings['class_cond'], use_checkpoint=False,
                             attention_resolutions=settings['attention_resolutions'], num_heads=settings['num_heads'],
                             num_heads_upsample=settings['num_heads_upsample'],
                             use_scale_shift_norm=settings['use_scale_shift_norm'], dropout=settings['dropout'])
        counts.append(sum(p.numel() for p in model.parameters()))
        del model
    out['readme_flags'] = torch.tensor(list('\n'.join(README_FLAGS).encode('utf-8')), dtype=torch.uint8)
    out['readme_counts'] = torch.tensor(counts, dtype=torch.int64)
    torch.save({k: v.contiguous() for k, v in out.items()}, HERE / 'improved-diffusion-reference.pt')
    for name in ['improved-diffusion-a-fp16.pt', 'improved-diffusion-b.pt', 'improved-diffusion-reference.pt']:
        print(name, (HERE / name).stat().st_size)


if __name__ == '__main__':
    main()
