#!/bin/bash
# The options campaign of issue #23 (docs/reliability.md, "Limits"): absurd values, combinations that used to fail late,
# options given twice and damaged model files, fed to the programs of samples/ and benchmarks/ as a user would. Each case
# runs in its own process under a watchdog that kills it above MEMORY_MB of resident memory or after SECONDS; it prints
# the exit code, the wall time, the peak resident set (VmHWM) and the program's last line, and whether files that were in
# the output folder before are byte-identical after.
#   bash eng/limits-campaign.sh [MEMORY_MB=3000] [SECONDS=120]    (after: dotnet build MLDiffusion.sln -c Release)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
limit_mb=${1:-3000}
limit_s=${2:-120}
ft="$root/samples/FolderTrainer/bin/Release/net10.0/FolderTrainer.dll"
fm="$root/samples/FashionMnist/bin/Release/net10.0/FashionMnist.dll"
sq="$root/benchmarks/SamplerQuality/bin/Release/net10.0/SamplerQuality.dll"
bm="$root/benchmarks/Microsoft.ML.Diffusion.Benchmarks/bin/Release/net10.0/Microsoft.ML.Diffusion.Benchmarks.dll"
sm="$root/benchmarks/StreamingMemory/bin/Release/net10.0/StreamingMemory.dll"
work=$(mktemp -d /tmp/limits-campaign-XXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

# 8 gray 16×16 PNGs.
mkdir -p "$work/img"
python3 - "$work/img" <<'PY'
import sys, zlib, struct
def png(w, h, seed):
    raw = b''.join(b'\x00' + bytes(((x * 7 + y * 13 + seed * 31) % 256) for x in range(w)) for y in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
for i in range(8):
    open(f'{sys.argv[1]}/{i}.png', 'wb').write(png(16, 16, i))
PY

echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+changes'), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), $(getconf _NPROCESSORS_ONLN) cores, MemAvailable $(awk '/MemAvailable/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), .NET $(dotnet --version)"
echo "watchdog: ${limit_mb} MB resident, ${limit_s} s"
echo

n=0
run() { # run NAME PROGRAM ARGS...  (the output folder, if any, is $work/out, filled with a sentinel file first)
  local name=$1; shift
  n=$((n + 1))
  rm -rf "$work/out"; mkdir -p "$work/out"; echo "sentinel $n" > "$work/out/keep.txt"
  local before; before=$(cd "$work/out" && find . -type f -exec sha256sum {} + | sort)
  local log="$work/log"
  local start; start=$(date +%s%N)
  dotnet "$@" >"$log" 2>&1 &
  local pid=$! peak=0 killed=""
  while kill -0 $pid 2>/dev/null; do
    local hwm; hwm=$(awk '/VmHWM/{print $2}' /proc/$pid/status 2>/dev/null)
    [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ] && peak=$hwm
    local ms=$((($(date +%s%N) - start) / 1000000))
    if [ "$peak" -gt $((limit_mb * 1024)) ]; then kill -9 $pid; killed=" KILLED(memory)"; fi
    if [ "$ms" -gt $((limit_s * 1000)) ]; then kill -9 $pid; killed=" KILLED(time)"; fi
    sleep 0.05
  done
  wait $pid; local rc=$?
  local ms=$((($(date +%s%N) - start) / 1000000))
  local after; after=$(cd "$work/out" 2>/dev/null && find . -type f -path './keep.txt' -exec sha256sum {} + | sort)
  local kept="kept"; [ "$after" == "$(echo "$before")" ] || kept="CHANGED"
  local extra; extra=$(cd "$work/out" 2>/dev/null && find . -mindepth 1 ! -name keep.txt | wc -l)
  local traces; traces=$(grep -c -E '^\s+at |Unhandled exception|terminate called' "$log")
  printf '%2d. %s\n    exit %s%s, %.1f s, peak %d MB, sentinel %s, %s new entries in the output folder, %s stack-trace lines\n' \
    $n "$name" $rc "$killed" "$(echo "$ms / 1000" | bc -l)" $((peak / 1024)) "$kept" "$extra" "$traces"
  # The last line the user reads (the first for a stack trace).
  local last; last=$(grep -v -E '^\s+at |^\s*$|^---' "$log" | grep -m1 -E 'Error|error|Unhandled|expects|exception|Exception|terminate|usage|refused|is not|given' || tail -n1 "$log")
  echo "    > ${last:0:400}"
}

small=(--size 8 --dim 8 --mults 1,2 --timesteps 20 --samples 4 --sampling-steps 2 --sample-every 2 --steps 2)
echo "== samples/FolderTrainer (8 images of 16×16)"
run "--batch 1000000" "$ft" "$work/img" --out "$work/out" "${small[@]}" --batch 1000000
run "--batch 100000" "$ft" "$work/img" --out "$work/out" "${small[@]}" --batch 100000
run "--timesteps 10000000" "$ft" "$work/img" --out "$work/out" "${small[@]}" --timesteps 10000000
run "--size 100000" "$ft" "$work/img" --out "$work/out" "${small[@]}" --size 100000
run "--size 8192 (within the side limit)" "$ft" "$work/img" --out "$work/out" "${small[@]}" --size 8192
run "--steps 99999999999999" "$ft" "$work/img" --out "$work/out" "${small[@]}" --steps 99999999999999
run "--dim 100000" "$ft" "$work/img" --out "$work/out" "${small[@]}" --dim 100000
run "--dim 16384 --mults 1 (within the width limit)" "$ft" "$work/img" --out "$work/out" "${small[@]}" --dim 16384 --mults 1
run "--dim 2048 --mults 1,2 (2.6e9 parameters)" "$ft" "$work/img" --out "$work/out" "${small[@]}" --dim 2048
run "--sampling-steps 100000 (T = 20)" "$ft" "$work/img" --out "$work/out" "${small[@]}" --sampling-steps 100000
run "--samples 100000000" "$ft" "$work/img" --out "$work/out" "${small[@]}" --samples 100000000
run "--minutes 1e300" "$ft" "$work/img" --out "$work/out" "${small[@]}" --minutes 1e300
run "--device tpu" "$ft" "$work/img" --out "$work/out" "${small[@]}" --device tpu
run "--device cuda (no GPU here)" "$ft" "$work/img" --out "$work/out" "${small[@]}" --device cuda
run "--size 8 --size 16 (an option twice)" "$ft" "$work/img" --out "$work/out" "${small[@]}" --size 16
run "--resume --resume (a flag twice)" "$ft" "$work/img" --out "$work/out" "${small[@]}" --resume --resume
run "--out is a file" "$ft" "$work/img" --out "$work/out/keep.txt" "${small[@]}"

echo
echo "== samples/FashionMnist (the embedded test split)"
fmsmall=(--out "$work/out" --no-metrics --steps 2)
run "--steps 99999999999999" "$fm" "${fmsmall[@]}" --steps 99999999999999
run "--sampling-steps 100000 (T = 1000)" "$fm" "${fmsmall[@]}" --sampling-steps 100000
run "--minutes 1e300" "$fm" --out "$work/out" --no-metrics --minutes 1e300
run "--experiment 1e300" "$fm" "${fmsmall[@]}" --experiment 1e300
run "--metric-images 100000000" "$fm" --out "$work/out" --steps 2 --metric-images 100000000
run "--device tpu" "$fm" "${fmsmall[@]}" --device tpu
run "--data (a folder without IDX files)" "$fm" "${fmsmall[@]}" --data "$work/img"
run "--seed 1 --seed 2 (an option twice)" "$fm" "${fmsmall[@]}" --seed 1 --seed 2

echo
echo "== benchmarks"
head -c 0 /dev/null > "$work/empty.zip"
run "SamplerQuality: a zero-byte model file" "$sq" "$work/empty.zip" "$work/none.bin" "$work/img"
run "SamplerQuality: a model file that does not exist" "$sq" "$work/missing.zip" "$work/none.bin" "$work/img"
run "SamplerQuality: IMAGES = abc" "$sq" "$work/empty.zip" "$work/none.bin" "$work/img" abc
run "Benchmarks: --batch 100000000" "$bm" --config S --phase train --batch 100000000 --steps 1 --warmup 0
run "Benchmarks: --steps abc" "$bm" --config S --steps abc
run "StreamingMemory: --size 100000" "$sm" --size 100000 --rows 1
run "StreamingMemory: --rows abc" "$sm" --rows abc
