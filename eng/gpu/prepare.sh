#!/usr/bin/env bash
# Run HERE (the development machine), from the repository root, before a GPU session's device calls:
# packs the benchmark, the main job and the test assembly with ../shared/gpu/pack.sh (no CPU backend; the .NET runtime
# travels), adds the Fashion-MNIST training split (Debian's dataset-fashion-mnist) and the PyTorch reference
# (denoising-diffusion-pytorch 2.1.1, commit 1d9d8dffb72e) to .gpu/, and copies eng/gpu/device-checks.sh beside them.
# Usage: bash eng/gpu/prepare.sh /path/to/denoising-diffusion-pytorch.git
set -euo pipefail
peer_repo=${1:?usage: prepare.sh PATH_TO_denoising-diffusion-pytorch_GIT_DIR}
[ -d /usr/share/datasets/fashion-mnist ] || sudo apt-get install -y dataset-fashion-mnist
bash ../shared/gpu/pack.sh \
  benchmarks/Microsoft.ML.Diffusion.Benchmarks/Microsoft.ML.Diffusion.Benchmarks.csproj \
  samples/FashionMnist/FashionMnist.csproj \
  Microsoft.ML.Diffusion.Tests/Microsoft.ML.Diffusion.Tests.csproj \
  benchmarks/SamplerQuality/SamplerQuality.csproj
# The test runner's code-coverage and instrumentation natives and the samples' copies of the test split do not travel:
# everything has to stay under the device tool's 64 MiB.
tmp=$(mktemp -d) && tar -xJf .gpu/app.tar.xz -C "$tmp"
rm -rf "$tmp"/app/CodeCoverage "$tmp"/app/{macos,alpine,ubuntu,arm64,x64,x86} "$tmp"/app/fashion-mnist "$tmp"/app/data/fashion-mnist
tar -C "$tmp" -cJf .gpu/app.tar.xz app && rm -rf "$tmp"
mkdir -p .gpu/peer
git -C "$peer_repo" archive 1d9d8dffb72e | tar -x -C .gpu/peer && rm -rf .gpu/peer/images
# The full Fashion-MNIST training split, xz-compressed (4 MiB smaller than the .gz files; device-checks.sh unpacks it);
# the test split travels anyway (samples/data/fashion-mnist). The runtime is recompressed harder. All of it, with the
# working tree, has to stay under the device tool's 64 MiB.
xz -dc .gpu/dotnet-runtime.tar.xz | xz -9e -T0 > .gpu/rt.tar.xz && mv .gpu/rt.tar.xz .gpu/dotnet-runtime.tar.xz
mkdir -p .gpu/data
for f in /usr/share/datasets/fashion-mnist/train-*-ubyte.gz; do zcat "$f" | xz -9e -T0 > ".gpu/data/$(basename "$f" .gz).xz"; done
cp eng/gpu/device-checks.sh .gpu/
du -sb .gpu | awk '{ printf "%.1f MiB in .gpu (the device tool carries at most 64)\n", $1 / 1048576 }'
