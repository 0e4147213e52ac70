#!/usr/bin/env bash
# Run HERE (the development machine), from the repository root, before a GPU session's device calls:
# packs the benchmark, the main job and the test assembly with ../shared/gpu/pack.sh (no CPU backend; the .NET runtime
# travels), adds the Fashion-MNIST training split (Debian's dataset-fashion-mnist) and the PyTorch reference
# (denoising-diffusion-pytorch 2.1.1, commit 1d9d8dffb72e) to .gpu/, and copies eng/gpu/device-checks.sh beside them.
# Usage: bash eng/gpu/prepare.sh /path/to/denoising-diffusion-pytorch.git
set -euo pipefail
peer_repo=${1:?usage: prepare.sh PATH_TO_denoising-diffusion-pytorch_GIT_DIR}
[ -d /usr/share/datasets/fashion-mnist ] || sudo apt-get install -y dataset-fashion-mnist
WITH_DATA=1 bash ../shared/gpu/pack.sh \
  benchmarks/Microsoft.ML.Diffusion.Benchmarks/Microsoft.ML.Diffusion.Benchmarks.csproj \
  samples/FashionMnist/FashionMnist.csproj \
  Microsoft.ML.Diffusion.Tests/Microsoft.ML.Diffusion.Tests.csproj
mkdir -p .gpu/peer
git -C "$peer_repo" archive 1d9d8dffb72e | tar -x -C .gpu/peer
cp eng/gpu/device-checks.sh .gpu/
du -sh .gpu
