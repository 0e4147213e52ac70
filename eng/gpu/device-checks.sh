#!/usr/bin/env bash
# Runs ON THE GPU MACHINE from the repository root, with .gpu/ made by eng/gpu/prepare.sh beside it, inside ONE device
# call (TorchSharp's native bridge is built once, at the start). Everything it measures goes into $OUT/records.tar.gz;
# the main job's model.zip and classifier.bin come back beside it; a summary is printed.
#   bash .gpu/device-checks.sh all [DEADLINE_S]   # device tests, PyTorch peer, benchmark suite, then the main job with
#                                                 # the time that is left before DEADLINE_S (default 500) seconds
#   bash .gpu/device-checks.sh bench              # device tests, PyTorch peer, benchmark suite in fp32 and with TF32, and
#                                                 # (with .gpu/model/model.zip and classifier.bin) every sampler's quality
#   bash .gpu/device-checks.sh mainjob MINUTES    # the main job on the full training split for MINUTES
set -uo pipefail
root=$(pwd)
out=${OUT:?OUT must name the folder that comes back}
mode=${1:-all}
arg=${2:-}
work=/tmp/records
mkdir -p $work /tmp/fashion-mnist
for f in .gpu/data/*.xz; do xz -dc "$f" > /tmp/fashion-mnist/$(basename "$f" .xz); done
cp samples/data/fashion-mnist/t10k-* /tmp/fashion-mnist/
cat > /tmp/inner.sh <<EOF
set -u
start=\$SECONDS
w=$work
mode=$mode
arg=$arg
save() { tar -czf $out/records.tar.gz -C \$w . ; }
samplers() {
  [ -f $root/.gpu/model/model.zip ] || return 0
  timeout 240 dotnet SamplerQuality.dll $root/.gpu/model/model.zip $root/.gpu/model/classifier.bin $root/samples/data/fashion-mnist 1000 500 --device cuda > \$w/samplers.jsonl 2>> \$w/samplers.log
  echo "== samplers (\$((SECONDS - start)) s)"; cat \$w/samplers.jsonl; tail -n 3 \$w/samplers.log
}
tests() {
  MLDIFFUSION_TEST_REPORT=\$w/device-measured.tsv timeout 150 dotnet Microsoft.ML.Diffusion.Tests.dll run-tests --category Device --row cuda > \$w/device-tests.txt 2>&1
  echo "== device tests (\$((SECONDS - start)) s)"; grep -E "FAILED|INCONCLUSIVE|passed" \$w/device-tests.txt | head -30
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > \$w/gpu.txt 2>&1
}
peer() {
  (cd $root && PYTHONPATH=.gpu/peer:.gpu/peer-stubs timeout 150 python3 .gpu/peer_gpu.py) > \$w/peer.txt 2>&1
  echo "== peer (\$((SECONDS - start)) s)"; tail -n 12 \$w/peer.txt
}
bench() { # \$1: file name, \$2...: extra options
  f=\$1; shift
  timeout 200 dotnet Microsoft.ML.Diffusion.Benchmarks.dll --suite gpu --device cuda --peer \$w/peer.txt "\$@" > \$w/\$f 2>> \$w/benchmark.log
  echo "== \$f (\$((SECONDS - start)) s)"; cat \$w/\$f | head -c 3000; echo; tail -n 5 \$w/benchmark.log
}
mainjob() { # \$1: minutes
  echo "== main job: \$1 minutes of training"
  timeout \$(awk "BEGIN{printf \\"%d\\", (\$1 + 3) * 60}") dotnet FashionMnist.dll --device cuda --minutes \$1 --data /tmp/fashion-mnist --out /tmp/mainjob > \$w/console.txt 2>&1
  echo "== main job done (\$((SECONDS - start)) s)"; tail -c 2500 \$w/console.txt
  cp /tmp/mainjob/samples.png /tmp/mainjob/denoising.png /tmp/mainjob/metrics.json /tmp/mainjob/training-log.csv /tmp/mainjob/training-curve.png \$w/ 2>/dev/null
  cp /tmp/mainjob/model.zip /tmp/mainjob/classifier.bin $out/ 2>/dev/null
}
case \$mode in
  all)
    tests; peer; bench benchmark-fp32.json
    deadline=\${arg:-500}
    left=\$(( deadline - (SECONDS - start) - 150 ))
    [ \$left -lt 60 ] && left=60
    mainjob \$(awk "BEGIN{printf \\"%.2f\\", \$left / 60}") ;;
  bench) tests; save; peer; save; bench benchmark-fp32.json; save; bench benchmark-tf32.json --tf32; save; samplers ;;
  mainjob) mainjob \${arg:-6} ;;
esac
EOF
bash .gpu/on-device.sh bash /tmp/inner.sh
tar -czf "$out/records.tar.gz" -C $work .
cp /tmp/records/samplers.jsonl "$out/" 2>/dev/null
ls -la "$out"
