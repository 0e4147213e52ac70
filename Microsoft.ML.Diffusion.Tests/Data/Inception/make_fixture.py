#!/usr/bin/env python3
"""Writes the Inception FID fixture of InceptionFidTests. Run once; the tests need no Python.

    /usr/bin/python3 make_fixture.py --reference DIR [--weights-file FILE]

DIR is pytorch-fid's `src` folder (the package `pytorch_fid`, version 0.3.0, extracted from its repository with
`git archive`). Needs torch and torchvision (Debian's python3-torch 1.13 and python3-torchvision 0.14 were used), numpy
and scipy. Nothing is downloaded: the model is pytorch-fid's own `InceptionV3([3])` (which builds `fid_inception_v3()`),
whose weight file is replaced by weights from the closed-form generator below, which the C# test reproduces bit for bit.

The generator (key index k in state-dict order, flat element index i, both integers):
    u = ((31 i^2 + 7919 i + 104729 k + 12345) mod 65521) / 65521            (double)
    conv / fc weight   (2u - 1) sqrt(6 / fan_in)        fan_in = product of all dims but the first
    bn.weight          0.8 + 0.4 u
    bn.bias            0.2 (2u - 1)
    bn.running_mean    0.1 (2u - 1)
    bn.running_var     0.5 + u
    fc.bias            0.1 (2u - 1)
    num_batches_tracked 0 (int64)
each rounded once to float32.

The inputs (image b, channel c, row h, column w), rounded once to float32:
    x = ((131 b + 71 c + 37 h + 17 w + h w) mod 97) / 96
images 0-2 are 32x32, image 3 is 299x299.

Writes, beside this script:
  keys.txt          the state dict's keys in order, each with its shape (the layout our loader must accept)
  features.npz      features32 (3x2048, float32: pool3 features of images 0-2, batch of 3),
                    features299 (1x2048, float32: image 3),
                    set_a (200x48), set_b (180x48) float64 feature sets, fid (1, float64: pytorch-fid's
                    calculate_frechet_distance of their statistics, computed as its calculate_activation_statistics does)
  stats_a.npz       mu/sigma of set_a as pytorch-fid's save_fid_stats writes them (np.savez_compressed)
  stats_a_plain.npz the same written by np.savez (stored, uncompressed), whose .npy members our writer must equal byte for byte
  legacy.pth        the first five tensors of the state dict plus `big` (4x6 float32, 0..23) and `view` (big[1:, ::2]: a
                    storage offset and strides) saved in torch.save's legacy format (_use_new_zipfile_serialization=False),
                    the format of pytorch-fid's published weight file
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def uniform(k, n):
    i = np.arange(n, dtype=np.int64)
    return ((31 * i * i + 7919 * i + 104729 * k + 12345) % 65521).astype(np.float64) / 65521.0


def generated_value(key, k, shape):
    n = int(np.prod(shape)) if len(shape) > 0 else 1
    if key.endswith('num_batches_tracked'):
        return torch.zeros(shape, dtype=torch.int64)
    u = uniform(k, n)
    if key.endswith('bn.weight'):
        v = 0.8 + 0.4 * u
    elif key.endswith('bn.bias'):
        v = 0.2 * (2.0 * u - 1.0)
    elif key.endswith('running_mean'):
        v = 0.1 * (2.0 * u - 1.0)
    elif key.endswith('running_var'):
        v = 0.5 + u
    elif key.endswith('weight'):
        fan_in = int(np.prod(shape[1:]))
        v = (2.0 * u - 1.0) * np.sqrt(6.0 / fan_in)
    elif key.endswith('bias'):
        v = 0.1 * (2.0 * u - 1.0)
    else:
        raise KeyError(key)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def image(b, size):
    c, h, w = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing='ij')
    return (((131 * b + 71 * c + 37 * h + 17 * w + h * w) % 97).astype(np.float64) / 96.0).astype(np.float32)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reference', required=True, help="pytorch-fid's src folder")
    parser.add_argument('--weights-file', help="also write the full generated state dict here (legacy torch.save format, "
                        "no num_batches_tracked, as files from before PyTorch 0.4.1): a stand-in for the real weight file "
                        "for benchmarks/InceptionFid, ~96 MB, never committed")
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    import pytorch_fid.inception as pfid
    from pytorch_fid.fid_score import calculate_frechet_distance

    # 1. The layout: build fid_inception_v3() once with its weight loading switched off, to learn keys and shapes.
    load = torch.nn.Module.load_state_dict
    pfid.load_state_dict_from_url = lambda *a, **k: None
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None
    layout = pfid.fid_inception_v3().state_dict()
    torch.nn.Module.load_state_dict = load

    # 2. The weights from the generator, handed to pytorch-fid in place of the downloaded file (strict loading).
    state = {key: generated_value(key, k, list(t.shape)) for k, (key, t) in enumerate(layout.items())}
    pfid.load_state_dict_from_url = lambda *a, **k: state
    model = pfid.InceptionV3([pfid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    here = Path(__file__).resolve().parent
    if args.weights_file:
        full = {key: value for key, value in state.items() if not key.endswith('num_batches_tracked')}
        torch.save(full, args.weights_file, _use_new_zipfile_serialization=False)
    with open(here / 'keys.txt', 'w') as f:
        for key, t in state.items():
            f.write(f"{key} {','.join(str(d) for d in t.shape)}\n")

    torch.set_num_threads(1)
    with torch.no_grad():
        small = torch.from_numpy(np.stack([image(b, 32) for b in range(3)]))
        large = torch.from_numpy(image(3, 299)[None])
        features32 = model(small)[0].squeeze(3).squeeze(2).numpy()
        features299 = model(large)[0].squeeze(3).squeeze(2).numpy()
    print('features32 mean/std/max', features32.mean(), features32.std(), np.abs(features32).max())
    print('features299 mean/std/max', features299.mean(), features299.std(), np.abs(features299).max())

    rng = np.random.RandomState(2015)
    set_a = rng.standard_normal((200, 48)) @ rng.standard_normal((48, 48)) * 0.3
    set_b = rng.standard_normal((180, 48)) @ rng.standard_normal((48, 48)) * 0.3 + 0.2
    stats = [(np.mean(s, axis=0), np.cov(s, rowvar=False)) for s in (set_a, set_b)]
    fid = calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    print('fid', repr(fid))

    np.savez(here / 'features.npz', features32=features32, features299=features299, set_a=set_a, set_b=set_b,
             fid=np.array([fid], dtype=np.float64))
    np.savez_compressed(here / 'stats_a.npz', mu=stats[0][0], sigma=stats[0][1])
    np.savez(here / 'stats_a_plain.npz', mu=stats[0][0], sigma=stats[0][1])

    big = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    legacy = {key: state[key] for key in list(state)[:5]}
    legacy['big'] = big
    legacy['view'] = big[1:, ::2]
    torch.save(legacy, here / 'legacy.pth', _use_new_zipfile_serialization=False)


if __name__ == '__main__':
    main()
