#!/usr/bin/env python3
"""Writes the guided-diffusion fixtures of ImprovedDiffusionCheckpointTests. Run once; the tests need no Python.

    git -C /work/.mirror/openai+guided-diffusion/repo archive HEAD | tar -x -C /tmp/guided-diffusion
    /usr/bin/python3 make_guided_diffusion_fixture.py --reference /tmp/guided-diffusion

The reference is openai/guided-diffusion's own source (its guided_diffusion package, imported from --reference; unet.py,
nn.py, fp16_util.py, logger.py and script_util.py with what they import). Needs torch (Debian's python3-torch 1.13 was
used) and numpy.

Writes, beside this script:
  guided-diffusion-c-fp16.pt    state dict, in float16, of a tiny class-conditional UNetModel with guided-diffusion's
                                additions: residual blocks that resample (resblock_updown), heads of a fixed width
                                (num_head_channels) and the new attention order; learned sigmas, scale-shift norm
  guided-diffusion-reference.pt a dict of tensors: x, t, y, the network's output (computed in float32 from the float16
                                values), and readme_flags (the MODEL_FLAGS its README gives for its published diffusion
                                models, UTF-8 bytes, one set a line) with readme_counts (the parameter counts of the models
                                its create_model builds from them)
"""
import argparse
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

# MODEL_FLAGS of guided-diffusion's README for its 64, 128, 256 (conditional, unconditional) and 512 diffusion models.
README_FLAGS = [
    "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --dropout 0.1 --image_size 64 --learn_sigma True "
    "--noise_schedule cosine --num_channels 192 --num_head_channels 64 --num_res_blocks 3 --resblock_updown True "
    "--use_new_attention_order True --use_fp16 True --use_scale_shift_norm True",
    "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 128 --learn_sigma True "
    "--noise_schedule linear --num_channels 256 --num_heads 4 --num_res_blocks 2 --resblock_updown True --use_fp16 True "
    "--use_scale_shift_norm True",
    "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 256 --learn_sigma True "
    "--noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True "
    "--use_fp16 True --use_scale_shift_norm True",
    "--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 --learn_sigma True "
    "--noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True "
    "--use_fp16 True --use_scale_shift_norm True",
    "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 512 --learn_sigma True "
    "--noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True "
    "--use_fp16 False --use_scale_shift_norm True",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reference', required=True, help='a directory holding the guided_diffusion package')
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    from guided_diffusion.unet import UNetModel
    from guided_diffusion.script_util import create_model, model_and_diffusion_defaults

    generator = torch.Generator().manual_seed(2027)
    # Model C: 8×8 RGB, widths 32 and 32, one residual block a level, residual blocks that resample, attention at both
    # resolutions with heads 16 channels wide in the new order, 3 classes, learned sigmas, scale-shift norm.
    c = UNetModel(image_size=8, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
                  attention_resolutions=(1, 2), dropout=0.0, channel_mult=(1, 1), num_classes=3, num_head_channels=16,
                  use_scale_shift_norm=True, resblock_updown=True, use_new_attention_order=True).eval()
    with torch.no_grad():
        for name, p in c.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            is_norm_scale = p.dim() == 1 and name.endswith('weight')  # only group norms have 1-D weights
            p.copy_((1 + 0.1 * noise if is_norm_scale else 0.1 * noise).half().float())

    out = {}
    x = torch.randn(3, 3, 8, 8, generator=generator)
    y = torch.tensor([2, 0, 1])
    t = torch.tensor([3, 250, 999])
    out['x'], out['y'], out['t'] = x, y, t
    with torch.no_grad():
        out['c_output'] = c(x, t, y=y)

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
                             channel_mult=settings['channel_mult'], learn_sigma=settings['learn_sigma'],
                             class_cond=settings['class_cond'], attention_resolutions=settings['attention_resolutions'],
                             num_heads=settings['num_heads'], num_head_channels=settings['num_head_channels'],
                             num_heads_upsample=settings['num_heads_upsample'],
                             use_scale_shift_norm=settings['use_scale_shift_norm'], dropout=settings['dropout'],
                             resblock_updown=settings['resblock_updown'], use_fp16=settings['use_fp16'],
                             use_new_attention_order=settings['use_new_attention_order'])
        counts.append(sum(p.numel() for p in model.parameters()))
        del model
    out['readme_flags'] = torch.tensor(list('\n'.join(README_FLAGS).encode('utf-8')), dtype=torch.uint8)
    out['readme_counts'] = torch.tensor(counts, dtype=torch.int64)

    torch.save({k: v.half() for k, v in c.state_dict().items()}, HERE / 'guided-diffusion-c-fp16.pt')
    torch.save({k: v.contiguous() for k, v in out.items()}, HERE / 'guided-diffusion-reference.pt')
    for name in ['guided-diffusion-c-fp16.pt', 'guided-diffusion-reference.pt']:
        print(name, (HERE / name).stat().st_size)
    print(counts)


if __name__ == '__main__':
    main()
