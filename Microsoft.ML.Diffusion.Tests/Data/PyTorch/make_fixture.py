#!/usr/bin/env python3
"""Writes the PyTorch checkpoint fixture of PyTorchCheckpointTests. Run once; the tests need no Python.

    python3 make_fixture.py --reference DIR

DIR holds the packages denoising_diffusion_pytorch (version 2.1.1), ema_pytorch (0.7.0) and einops (0.8.0) as source
folders. Needs torch (Debian's python3-torch 1.13 was used) and nothing else: the reference's imports that only its
Trainer and data loading use (torchvision, accelerate, PIL, scipy, tqdm) are replaced by empty modules.

Writes, beside this script:
  model-1.pt          a checkpoint laid out as denoising-diffusion-pytorch's Trainer.save writes it: step, model (the
                      GaussianDiffusion state dict), opt (Adam after one step), ema (the EMA wrapper's state dict),
                      scaler (None), version
  ema.safetensors     the EMA model's GaussianDiffusion state dict as a safetensors file
  reference.safetensors  inputs and the reference U-Net's outputs: x, t, model_output (online weights),
                      ema_output (EMA weights), all float32 except t (int64)
"""
import argparse
import json
import struct
import sys
import types
from pathlib import Path

import torch


def stub_modules():
    """Empty stand-ins for modules the reference imports but the U-Net and GaussianDiffusion never use."""
    class Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)
            return lambda *args, **kwargs: None

    for name in ['torchvision', 'torchvision.transforms', 'torchvision.utils', 'accelerate', 'PIL', 'PIL.Image',
                 'scipy', 'scipy.optimize', 'scipy.linalg', 'tqdm', 'tqdm.auto', 'pytorch_fid',
                 'pytorch_fid.inception']:
        if name not in sys.modules:
            sys.modules[name] = Anything(name)
    sys.modules['torchvision'].transforms = sys.modules['torchvision.transforms']
    sys.modules['torchvision'].utils = sys.modules['torchvision.utils']


def import_package_module(root, package, module):
    """Imports package.module without running package/__init__.py (which imports every variant of the library)."""
    if package not in sys.modules:
        pkg = types.ModuleType(package)
        pkg.__path__ = [str(Path(root) / package)]
        sys.modules[package] = pkg
    return __import__(f'{package}.{module}', fromlist=[module])


def write_safetensors(path, tensors):
    """The safetensors layout: 8-byte little-endian header length, JSON header, then the raw little-endian data."""
    names = {torch.float32: 'F32', torch.int64: 'I64', torch.bool: 'BOOL', torch.float64: 'F64'}
    header, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        data = t.numpy().tobytes() if t.dtype != torch.bool else bytes(t.to(torch.uint8).numpy().tobytes())
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reference', required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    stub_modules()
    ddpm = import_package_module(args.reference, 'denoising_diffusion_pytorch', 'denoising_diffusion_pytorch')
    ema_module = import_package_module(args.reference, 'ema_pytorch', 'ema_pytorch')
    assert ddpm.__version__ == '2.1.1', ddpm.__version__

    torch.manual_seed(2024)
    unet = ddpm.Unet(dim=8, dim_mults=(1, 2), channels=3, attn_heads=2, attn_dim_head=8)
    diffusion = ddpm.GaussianDiffusion(unet, image_size=8, timesteps=20, objective='pred_v', beta_schedule='cosine')
    ema = ema_module.EMA(diffusion, beta=0.99, update_every=1)

    # One Adam step, so that the checkpoint carries a real optimizer state; then different online and EMA weights, and
    # every parameter away from its initial value (RMSNorm gains of 1 would hide a misplaced gain).
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-3)
    diffusion(torch.rand(2, 3, 8, 8)).backward()
    opt.step()
    with torch.no_grad():
        for p in diffusion.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for p in ema.ema_model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ema.initted.fill_(True)
    ema.step.fill_(1)

    checkpoint = {
        'step': 1,
        'model': diffusion.state_dict(),
        'opt': opt.state_dict(),
        'ema': ema.state_dict(),
        'scaler': None,
        'version': ddpm.__version__,
    }
    here = Path(__file__).resolve().parent
    torch.save(checkpoint, here / 'model-1.pt')
    write_safetensors(here / 'ema.safetensors', dict(ema.ema_model.state_dict()))

    x = torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 5, 13, 19])
    diffusion.eval()
    ema.ema_model.eval()
    with torch.no_grad():
        model_output = diffusion.model(x, t)
        ema_output = ema.ema_model.model(x, t)
    write_safetensors(here / 'reference.safetensors',
                      {'x': x, 't': t, 'model_output': model_output, 'ema_output': ema_output})
    parameters = sum(p.numel() for p in unet.parameters())
    print(f'U-Net parameters: {parameters}; model-1.pt and two safetensors files written to {here}')


if __name__ == '__main__':
    main()
