#!/usr/bin/env bash
# Runs ON THE GPU MACHINE from the repository root, with .gpu/ made by eng/gpu/prepare.sh beside it, inside ONE device
# call. Writes at most 8 files to $OUT (what the device tool brings back).
#   bash .gpu/device-checks.sh checks    # device tests, PyTorch peer, benchmark suite fp32 and TF32   (about 6 minutes)
#   bash .gpu/device-checks.sh mainjob M # the main job on the full training split for M minutes      (M + about 3 minutes)
set -uo pipefail
root=$(pwd)
out=${OUT:?OUT must name the folder that comes back}
mode=${1:-checks}
case "$mode" in
  checks)
    bash .gpu/on-device.sh sh -c "
      MLDIFFUSION_TEST_REPORT=$out/device-measured.tsv timeout 180 dotnet Microsoft.ML.Diffusion.Tests.dll run-tests --category Device --row cuda > $out/device-tests.txt 2>&1
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $out/gpu.txt 2>&1
      (cd $root && PYTHONPATH=.gpu/peer:.gpu/peer-stubs timeout 200 python3 .gpu/peer_gpu.py) > $out/peer.txt 2>&1
      timeout 150 dotnet Microsoft.ML.Diffusion.Benchmarks.dll --suite gpu --device cuda --peer $out/peer.txt > $out/benchmark-fp32.json 2> $out/benchmark.log
      timeout 150 dotnet Microsoft.ML.Diffusion.Benchmarks.dll --suite gpu --device cuda --tf32 --peer $out/peer.txt > $out/benchmark-tf32.json 2>> $out/benchmark.log
      true"
    ;;
  mainjob)
    minutes=${2:-6}
    bash .gpu/on-device.sh sh -c "
      timeout $(( (minutes + 4) * 60 )) dotnet FashionMnist.dll --device cuda --minutes $minutes --data $root/.gpu/data/fashion-mnist --metric-images 1000 --out /tmp/mainjob > $out/console.txt 2>&1
      cp /tmp/mainjob/samples.png /tmp/mainjob/denoising.png /tmp/mainjob/metrics.json /tmp/mainjob/training-log.csv $out/ 2>/dev/null
      true"
    ;;
  *) echo "usage: device-checks.sh checks | mainjob MINUTES" >&2; exit 2 ;;
esac
