#!/usr/bin/env python3
"""Writes the diffusers fixture of DiffusersPipelineTests and DiffusersSchedulerTests. Run once; the tests need no Python.

    /usr/bin/python3 make_fixture.py --reference DIR

DIR is diffusers' src folder at tag v0.21.0 (git -C MIRROR archive v0.21.0 src/diffusers | tar -x -C /tmp/somewhere;
DIR = /tmp/somewhere/src), the last diffusers whose UNet2DModel and schedulers run on Debian's python3-torch 1.13.
Needs torch and numpy and nothing else: the third-party modules diffusers imports for downloading, configuration files
and loaders (huggingface_hub, safetensors, packaging, filelock, regex, tqdm, ...) are replaced by empty modules; only
UNet2DModel, DDPMScheduler and DDIMScheduler are used. Every file is written by this script itself (safetensors by
write_safetensors, the .bin by torch.save), laid out as diffusers' save_pretrained lays out a pipeline folder.

Writes, beside this script:
  ddpm-tiny/            a DDPMPipeline folder laid out as google/ddpm-cifar10-32 is: model_index.json, unet/config.json
                        (diffusers 0.1-era keys: attention_head_dim null, flip_sin_to_cos false, freq_shift 1,
                        downsample_padding 0, norm_eps 1e-6), unet/diffusion_pytorch_model.bin (torch.save, fp32) with the
                        old attention names query/key/value/proj_attn, scheduler/scheduler_config.json (DDPMScheduler)
  ddpm-class-tiny/      a class-conditional (num_class_embeds 3), learned-variance (out_channels 6), center_input_sample
                        UNet2DModel with 8 attention heads and mid_block_scale_factor 1.5, weights in fp16 as
                        unet/diffusion_pytorch_model.safetensors with today's names (to_q/to_k/to_v/to_out.0); its
                        scheduler: DDPMScheduler, squaredcos_cap_v2, learned_range
  reference.safetensors inputs and outputs: x1/t1/out1 (ddpm-tiny), x2/t2/c2/out2 (ddpm-class-tiny, computed with the
                        fp16-rounded weights in fp32)
  schedulers/NAME.json  scheduler configs; schedulers/steps.safetensors: for each NAME the sample, the model outputs and
                        noise given to its first steps, the timesteps visited and diffusers' prev_sample after each step
"""
import argparse
import importlib.machinery
import json
import re
import struct
import sys
import types
from pathlib import Path

import torch


def stub_modules():
    """Empty stand-ins for the third-party modules diffusers imports but UNet2DModel and its schedulers never use."""
    class Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)
            return type(name, (), {'__init__': lambda self, *a, **k: None, '__call__': lambda self, *a, **k: None})

    class Version:
        def __init__(self, text):
            self.release = tuple(int(x) for x in re.findall(r'\d+', str(text).split('+')[0])[:3])
            self.base_version = '.'.join(map(str, self.release))

        def __lt__(self, other): return self.release < other.release
        def __le__(self, other): return self.release <= other.release
        def __gt__(self, other): return self.release > other.release
        def __ge__(self, other): return self.release >= other.release
        def __eq__(self, other): return self.release == other.release

    for name in ['packaging', 'packaging.version', 'huggingface_hub', 'huggingface_hub.utils', 'huggingface_hub.constants',
                 'huggingface_hub.file_download', 'safetensors', 'safetensors.torch', 'filelock', 'regex',
                 'importlib_metadata', 'requests', 'tqdm', 'diffusers.loaders']:
        module = sys.modules.setdefault(name, Anything(name))
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules['packaging.version'].parse = Version
    sys.modules['packaging.version'].Version = Version
    sys.modules['packaging'].version = sys.modules['packaging.version']
    sys.modules['huggingface_hub.constants'].HUGGINGFACE_HUB_CACHE = '/nonexistent/hub'
    sys.modules['huggingface_hub.constants'].hf_cache_home = '/nonexistent'


def write_safetensors(path, tensors, metadata=None):
    """The safetensors layout: 8-byte little-endian header length, JSON header, then the raw little-endian data."""
    names = {torch.float32: 'F32', torch.float16: 'F16', torch.int64: 'I64'}
    header, blobs, offset = {}, [], 0
    if metadata:
        header['__metadata__'] = metadata
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        data = t.numpy().tobytes()
        header[key] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + '\n')


def perturb(model):
    """Moves every parameter away from its initial value (norm gains of 1 and zero biases would hide a misplaced one)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def old_attention_names(state):
    """The names diffusers 0.1-era checkpoints (google/ddpm-*) carry for the attention blocks' projections."""
    renamed = {}
    for key, value in state.items():
        for new, old in (('.to_q.', '.query.'), ('.to_k.', '.key.'), ('.to_v.', '.value.'), ('.to_out.0.', '.proj_attn.')):
            key = key.replace(new, old)
        renamed[key] = value
    return renamed


def unet_config(model, version):
    """config.json as save_pretrained writes it: the constructor's arguments, plus _class_name and _diffusers_version."""
    config = {'_class_name': 'UNet2DModel', '_diffusers_version': version}
    config.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.config).items() if not k.startswith('_')})
    return config


def scheduler_config(scheduler, version):
    config = {'_class_name': type(scheduler).__name__, '_diffusers_version': version}
    config.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(scheduler.config).items() if not k.startswith('_')})
    return config


def first_steps(scheduler, channels, model_channels, steps, count, seed, use_clipped_model_output=None):
    """Runs the scheduler's first steps on a fixed sample with fixed model outputs; returns what the test needs."""
    generator = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps)
    sample = torch.randn(1, channels, 8, 8, generator=generator)
    result = {'sample': sample.clone(), 'timesteps': scheduler.timesteps[:count].to(torch.int64).clone()}
    for k in range(count):
        t = scheduler.timesteps[k]
        output = torch.randn(1, model_channels, 8, 8, generator=generator)
        noise_seed = seed * 100 + k
        noise = torch.randn(1, channels, 8, 8, generator=torch.Generator().manual_seed(noise_seed))
        kwargs = {'generator': torch.Generator().manual_seed(noise_seed)}
        if use_clipped_model_output is not None:
            kwargs['use_clipped_model_output'] = use_clipped_model_output
        sample = scheduler.step(output, t, sample, **kwargs).prev_sample
        result[f'output{k}'] = output
        result[f'noise{k}'] = noise
        result[f'prev{k}'] = sample.clone()
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reference', required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    stub_modules()
    import diffusers
    from diffusers.models.unet_2d import UNet2DModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
    version = diffusers.__version__
    assert version == '0.21.0', version
    here = Path(__file__).resolve().parent
    torch.manual_seed(2026)
    reference = {}

    # 1. A DDPMPipeline laid out as google/ddpm-cifar10-32 (its config keys, a .bin with the old attention names).
    unet1 = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=2,
                        down_block_types=('DownBlock2D', 'AttnDownBlock2D'), up_block_types=('AttnUpBlock2D', 'UpBlock2D'),
                        attention_head_dim=None, norm_num_groups=8, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1,
                        downsample_padding=0, center_input_sample=False, time_embedding_type='positional',
                        mid_block_scale_factor=1, act_fn='silu')
    perturb(unet1)
    unet1.eval()
    folder1 = here / 'ddpm-tiny'
    write_json(folder1 / 'model_index.json', {'_class_name': 'DDPMPipeline', '_diffusers_version': version,
                                              'scheduler': ['diffusers', 'DDPMScheduler'], 'unet': ['diffusers', 'UNet2DModel']})
    write_json(folder1 / 'unet' / 'config.json', unet_config(unet1, version))
    torch.save(old_attention_names(unet1.state_dict()), folder1 / 'unet' / 'diffusion_pytorch_model.bin')
    ddpm1 = DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', beta_start=0.0001, beta_end=0.02,
                          variance_type='fixed_small', clip_sample=True)
    write_json(folder1 / 'scheduler' / 'scheduler_config.json', scheduler_config(ddpm1, version))
    x1 = torch.randn(2, 3, 8, 8)
    t1 = torch.tensor([3, 917])
    with torch.no_grad():
        reference.update(x1=x1, t1=t1, out1=unet1(x1, t1).sample)

    # 2. Class labels, learned variance, centred input, 8 heads, a scaled middle block; fp16 safetensors, today's names.
    unet2 = UNet2DModel(sample_size=8, in_channels=3, out_channels=6, block_out_channels=(32, 64), layers_per_block=1,
                        down_block_types=('DownBlock2D', 'AttnDownBlock2D'), up_block_types=('AttnUpBlock2D', 'UpBlock2D'),
                        attention_head_dim=8, norm_num_groups=16, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
                        downsample_padding=1, center_input_sample=True, mid_block_scale_factor=1.5, num_class_embeds=3)
    perturb(unet2)
    unet2 = unet2.half().float()  # the weights the file holds, computed in fp32
    unet2.eval()
    folder2 = here / 'ddpm-class-tiny'
    write_json(folder2 / 'model_index.json', {'_class_name': 'DDPMPipeline', '_diffusers_version': version,
                                              'scheduler': ['diffusers', 'DDPMScheduler'], 'unet': ['diffusers', 'UNet2DModel']})
    write_json(folder2 / 'unet' / 'config.json', unet_config(unet2, version))
    write_safetensors(folder2 / 'unet' / 'diffusion_pytorch_model.safetensors',
                      {k: v.half() for k, v in unet2.state_dict().items()}, metadata={'format': 'pt'})
    ddpm2 = DDPMScheduler(num_train_timesteps=1000, beta_schedule='squaredcos_cap_v2', variance_type='learned_range',
                          clip_sample=True)
    write_json(folder2 / 'scheduler' / 'scheduler_config.json', scheduler_config(ddpm2, version))
    x2 = torch.randn(2, 3, 8, 8)
    t2 = torch.tensor([0, 640])
    c2 = torch.tensor([2, 0])
    with torch.no_grad():
        reference.update(x2=x2, t2=t2, c2=c2, out2=unet2(x2, t2, class_labels=c2).sample)
    write_safetensors(here / 'reference.safetensors', reference)

    # 3. Schedulers: their first steps on fixed samples, model outputs and noise.
    cases = {
        'ddpm-linear-small': (ddpm1, 3, 1000, {}),
        'ddpm-cosine-learned': (ddpm2, 6, 1000, {}),
        'ddpm-large-sample': (DDPMScheduler(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085,
                                            beta_end=0.012, variance_type='fixed_large', prediction_type='sample',
                                            clip_sample=False), 3, 1000, {}),
        'ddpm-v-trained-betas': (DDPMScheduler(num_train_timesteps=50, trained_betas=torch.linspace(0.001, 0.2, 50).tolist(),
                                               prediction_type='v_prediction', clip_sample=True), 3, 50, {}),
        'ddim-leading-v': (DDIMScheduler(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085,
                                         beta_end=0.012, prediction_type='v_prediction', clip_sample=False, steps_offset=1,
                                         set_alpha_to_one=False, timestep_spacing='leading'), 3, 10, {}),
        'ddim-trailing-clipped': (DDIMScheduler(num_train_timesteps=1000, beta_schedule='linear', clip_sample=True,
                                                timestep_spacing='trailing'), 3, 20, {'use_clipped_model_output': True}),
        'ddim-linspace': (DDIMScheduler(num_train_timesteps=1000, beta_schedule='linear', clip_sample=False,
                                        timestep_spacing='linspace'), 3, 25, {}),
    }
    steps = {}
    for index, (name, (scheduler, model_channels, count, extra)) in enumerate(cases.items()):
        write_json(here / 'schedulers' / f'{name}.json', scheduler_config(scheduler, version))
        run = first_steps(scheduler, 3, model_channels, count, 3, seed=index + 1, **extra)
        steps.update({f'{name}.{k}': v for k, v in run.items()})
    write_safetensors(here / 'schedulers' / 'steps.safetensors', steps)
    for name, model in (('ddpm-tiny', unet1), ('ddpm-class-tiny', unet2)):
        print(f'{name}: {sum(p.numel() for p in model.parameters())} parameters')


if __name__ == '__main__':
    main()
