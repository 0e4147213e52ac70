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

# The folder trainer's small settings, with a case's own values in place of the defaults (an option given twice is refused).
declare -A base=([--size]=8 [--dim]=8 [--mults]=1,2 [--timesteps]=20 [--samples]=4 [--sampling-steps]=2 [--sample-every]=2 [--steps]=2)
ftrun() { # ftrun NAME [OPTION VALUE]...
  local name=$1; shift
  local -A m; local k
  for k in "${!base[@]}"; do m[$k]=${base[$k]}; done
  while [ $# -gt 0 ]; do m[$1]=$2; shift 2; done
  local args=()
  for k in "${!m[@]}"; do args+=("$k" "${m[$k]}"); done
  run "$name" "$ft" "$work/img" --out "$work/out" "${args[@]}"
}
echo "== samples/FolderTrainer (8 images of 16×16)"
ftrun "--batch 1000000" --batch 1000000
ftrun "--batch 100000" --batch 100000
ftrun "--timesteps 10000000" --timesteps 10000000
ftrun "--size 100000" --size 100000
ftrun "--size 8192 (within the side limit)" --size 8192
ftrun "--steps 99999999999999" --steps 99999999999999
ftrun "--dim 100000" --dim 100000
ftrun "--dim 16384 --mults 1 (within the width limit)" --dim 16384 --mults 1
ftrun "--dim 2048 --mults 1,2 (2.6e9 parameters)" --dim 2048
ftrun "--sampling-steps 100000 (T = 20)" --sampling-steps 100000
ftrun "--samples 100000000" --samples 100000000
ftrun "--samples 1000 --size 1024" --samples 1000 --size 1024
ftrun "--minutes 1e300" --minutes 1e300
ftrun "--device tpu" --device tpu
ftrun "--device cuda (no GPU here)" --device cuda
run "--size 8 --size 16 (an option twice)" "$ft" "$work/img" --out "$work/out" --size 8 --size 16 --dim 8 --mults 1,2 --timesteps 20 --steps 2 --sample-every 2 --samples 4 --sampling-steps 2
run "--resume --resume (a flag twice)" "$ft" "$work/img" --out "$work/out" --resume --resume --size 8 --dim 8 --mults 1,2 --timesteps 20 --steps 2 --sample-every 2 --samples 4 --sampling-steps 2
run "--out is a file" "$ft" "$work/img" --out "$work/out/keep.txt" --size 8 --dim 8 --mults 1,2 --timesteps 20 --steps 2 --sample-every 2 --samples 4 --sampling-steps 2

echo
echo "== samples/FashionMnist (the embedded test split)"
fmsmall=(--out "$work/out" --no-metrics --steps 2)
run "--steps 99999999999999" "$fm" --out "$work/out" --no-metrics --steps 99999999999999
run "--sampling-steps 100000 (T = 1000)" "$fm" "${fmsmall[@]}" --sampling-steps 100000
run "--minutes 1e300" "$fm" --out "$work/out" --no-metrics --minutes 1e300
run "--experiment 1e300" "$fm" "${fmsmall[@]}" --experiment 1e300
run "--metric-images 100000000" "$fm" --out "$work/out" --steps 2 --metric-images 100000000
run "--device tpu" "$fm" "${fmsmall[@]}" --device tpu
run "--data (a folder without IDX files)" "$fm" "${fmsmall[@]}" --data "$work/img"
run "--seed 1 --seed 2 (an option twice)" "$fm" "${fmsmall[@]}" --seed 1 --seed 2
run "--minutes 1e-300" "$fm" --out "$work/out" --no-metrics --minutes 1e-300

echo
echo "== benchmarks"
head -c 0 /dev/null > "$work/empty.zip"
# A real model file (a tiny folder-trainer run), then damaged copies of it: cut in half, one byte flipped in the middle
# (inside the compressed weights, the bulk of the file), text.
dotnet "$ft" "$work/img" --out "$work/model-run" --size 8 --dim 8 --mults 1,2 --timesteps 20 --steps 2 --sample-every 2 --samples 4 --sampling-steps 2 > /dev/null
model="$work/model-run/model.zip"
size=$(stat -c %s "$model")
head -c $((size / 2)) "$model" > "$work/half.zip"
python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[len(b)//2]^=0x10; open(sys.argv[2],'wb').write(b)" "$model" "$work/flipped.zip"
echo "not a model" > "$work/text.zip"
for f in half flipped text; do
  run "SamplerQuality: model file $f.zip" "$sq" "$work/$f.zip" "$work/none.bin" "$work/img"
done
run "SamplerQuality: a zero-byte model file" "$sq" "$work/empty.zip" "$work/none.bin" "$work/img"
run "SamplerQuality: a model file that does not exist" "$sq" "$work/missing.zip" "$work/none.bin" "$work/img"
run "SamplerQuality: IMAGES = abc" "$sq" "$work/empty.zip" "$work/none.bin" "$work/img" abc
run "Benchmarks: --batch 100000000" "$bm" --config S --phase train --batch 100000000 --steps 1 --warmup 0
run "Benchmarks: --steps abc" "$bm" --config S --steps abc
run "StreamingMemory: --size 100000" "$sm" --size 100000 --rows 1
run "StreamingMemory: --rows abc" "$sm" --rows abc
