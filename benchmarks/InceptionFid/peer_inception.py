#!/usr/bin/env python3
"""The peer of `InceptionFid speed`: pytorch-fid's InceptionV3 (its own source, from the folder given) timed on the CPU.

    /usr/bin/python3 peer_inception.py --reference DIR [--batch 50] [--batches 4] [--threads N] [--size 32]

DIR is pytorch-fid's `src` folder (`git archive` of github.com/mseitzer/pytorch-fid). Its weight file is never
downloaded: the network keeps torchvision's initial weights (speed does not depend on the values). Prints one JSON line:
images per second of pytorch-fid's InceptionV3([3]) forward (resize to 299, normalise, pool3) on random images of
size x size, after one warm-up batch, under torch.no_grad.
"""
import argparse
import json
import sys
import time

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reference', required=True)
    parser.add_argument('--batch', type=int, default=50)
    parser.add_argument('--batches', type=int, default=4)
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--size', type=int, default=32)
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    import pytorch_fid.inception as pfid

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    pfid.load_state_dict_from_url = lambda *a, **k: None
    load = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None  # keep the initial weights: nothing to download
    model = pfid.InceptionV3([3]).eval()
    torch.nn.Module.load_state_dict = load

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=generator)
    with torch.no_grad():
        model(images)
        start = time.perf_counter()
        for _ in range(args.batches):
            model(images)[0].squeeze(3).squeeze(2).cpu().numpy()
        seconds = time.perf_counter() - start
    print(json.dumps({'images_per_second': args.batch * args.batches / seconds, 'seconds': seconds,
                      'threads': torch.get_num_threads(), 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
