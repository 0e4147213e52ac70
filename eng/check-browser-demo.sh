#!/usr/bin/env bash
# The browser demo's check (samples/BrowserDemo): headless Chromium runs the page, which generates with onnxruntime-web,
# and its screenshot must show the TorchSharp sampler's pixels (Microsoft.ML.Diffusion.Tests/Onnx/BrowserDemoTests.cs).
# Not part of .ci/run: Chromium is an 81 MB download (290 MB installed) and its start-up and WebAssembly compile take
# 5-20 s on 2 cores, well over the ~60 s CI can spare with the install. Installs what is missing — onnxruntime-web
# from npm (npm ci in samples/BrowserDemo, from its package-lock.json) and, as root with apt, Debian's chromium — then
# runs the test, which must pass (inconclusive counts as a failure here). Exits non-zero on any failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if [ ! -f samples/BrowserDemo/node_modules/onnxruntime-web/dist/ort.wasm.min.js ]; then
  echo "== browser demo: npm ci in samples/BrowserDemo"
  npm ci --prefix samples/BrowserDemo --no-audit --no-fund
fi
if [ -z "${MLDIFFUSION_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== browser demo: apt-get install chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
  else
    echo "browser demo: no Chromium; install it (Debian/Ubuntu: apt-get install chromium) or set MLDIFFUSION_CHROMIUM" >&2
    exit 1
  fi
fi
results="$repo/Microsoft.ML.Diffusion.Tests/TestResults"
rm -f "$results/browser-demo.trx"
dotnet build Microsoft.ML.Diffusion.Tests -c Release --nologo -v quiet -clp:ErrorsOnly
dotnet test Microsoft.ML.Diffusion.Tests -c Release --no-build --filter "FullyQualifiedName~BrowserDemoTests" --logger "trx;LogFileName=browser-demo.trx" --logger "console;verbosity=detailed"
if ! grep -q 'outcome="Passed"' "$results/browser-demo.trx" || grep -q 'outcome="\(Failed\|Inconclusive\|NotExecuted\)"' "$results/browser-demo.trx"; then
  echo "browser demo: the test did not pass (see $results/browser-demo.trx)" >&2
  exit 1
fi
echo "== browser demo: passed in ${SECONDS} s"
