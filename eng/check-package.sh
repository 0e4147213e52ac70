#!/usr/bin/env bash
# Can a stranger install the package? Packs Microsoft.ML.Diffusion, then builds eng/consumer in a temporary folder
# OUTSIDE the repository against that package from a local feed, for net8.0 and net10.0, and for each: trains a few
# steps and saves an ML.NET model file, then loads it in a fresh process and generates. The two processes must generate
# the same pixels. All of it twice: with the ML.NET the package resolves (5.0.1) and with ML.NET 6.0.0 added by the
# consumer. Then the deploy-only package: packs Microsoft.ML.Diffusion.Onnx, builds eng/onnx-consumer (that package and
# ONNX Runtime's CPU package, no TorchSharp: checked in its restore and its output) for net8.0 and net10.0, and runs
# the ONNX file the first consumer exported: its pixels must match TorchSharp's within docs/onnx.md's tolerance. Prints
# both applications' output sizes (the install size of each path). Exits non-zero on any failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# A version of its own, so that no earlier package of the same version in the NuGet cache can stand in for this one.
version="0.1.0-ci.$(date +%s).$$"
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cleanup() { rm -rf "$work" "$packages/microsoft.ml.diffusion/$version" "$packages/microsoft.ml.diffusion.onnx/$version"; }
trap cleanup EXIT

echo "== package check: packing Microsoft.ML.Diffusion $version"
dotnet pack "$repo/Microsoft.ML.Diffusion/Microsoft.ML.Diffusion.csproj" -c Release -o "$work/feed" -p:Version="$version" --nologo -v quiet
deploy_seconds=$SECONDS
dotnet pack "$repo/Microsoft.ML.Diffusion.Onnx/Microsoft.ML.Diffusion.Onnx.csproj" -c Release -o "$work/feed" -p:Version="$version" --nologo -v quiet
deploy_seconds=$((SECONDS - deploy_seconds))
cp -r "$repo/eng/consumer" "$work/template"
cat > "$work/template/NuGet.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
CONFIG

# Two passes: the ML.NET our package resolves by itself (the lowest of its range, 5.0.1), then a stranger's upgrade to
# ML.NET 6.0.0 (restore must not warn NU1608, and the same fit/save/load/generate must work).
for mlnet in "" 6.0.0; do
  app="$work/app${mlnet:+-mlnet$mlnet}"
  cp -r "$work/template" "$app"
  echo "== package check: building a consumer outside the repository ($app) for net8.0 and net10.0, ML.NET ${mlnet:-as resolved}"
  dotnet build "$app/Consumer.csproj" -c Release -p:MLDiffusionVersion="$version" ${mlnet:+-p:MLNetVersion=$mlnet} --nologo -v quiet -clp:ErrorsOnly
  resolved=$(grep -o '"Microsoft.ML/[0-9.]*"' "$app/obj/project.assets.json" | head -n 1 | tr -d '"')
  skia=$(grep -o '"SkiaSharp/[0-9.]*"' "$app/obj/project.assets.json" | head -n 1 | tr -d '"')
  echo "   resolved $resolved, $skia"
  if [ -n "$mlnet" ] && [ "$resolved" != "Microsoft.ML/$mlnet" ]; then
    echo "package check: asked for ML.NET $mlnet, restore resolved $resolved" >&2
    exit 1
  fi

  for tfm in net8.0 net10.0; do
    bin="$app/bin/Release/$tfm/linux-x64"
    if [ "$tfm" = net8.0 ]; then run=("$bin/Consumer"); else run=(dotnet "$bin/Consumer.dll"); fi
    fitted=$("${run[@]}" fit "$work/model-$tfm$mlnet.zip")
    loaded=$("${run[@]}" load "$work/model-$tfm$mlnet.zip")
    echo "   $tfm fit:  $fitted"
    echo "   $tfm load: $loaded"
    case "$fitted" in
      ".NET ${tfm#net}"*) ;;
      *) echo "package check: $tfm ran on '$fitted', not .NET ${tfm#net}" >&2; exit 1 ;;
    esac
    if [ "$fitted" != "$loaded" ]; then
      echo "package check: $tfm: the model loaded in a fresh process generates other pixels than the one that was saved" >&2
      exit 1
    fi
    if [ -z "$mlnet" ] && [ "$tfm" = net10.0 ]; then
      # The sampler as ONNX, and TorchSharp's pixels for the deploy-only application to match.
      export_start=$SECONDS
      echo "   $tfm export: $("${run[@]}" export "$work/model-$tfm$mlnet.zip" "$work/model.onnx")"
      deploy_seconds=$((deploy_seconds + SECONDS - export_start))
      torch_bin="$bin"
    fi
  done
done

deploy_start=$SECONDS
onnx_app="$work/onnx-app"
cp -r "$repo/eng/onnx-consumer" "$onnx_app"
cp "$work/template/NuGet.config" "$onnx_app/NuGet.config"
echo "== deploy-only check: Microsoft.ML.Diffusion.Onnx $version + Microsoft.ML.OnnxRuntime, no TorchSharp, for net8.0 and net10.0 ($onnx_app)"
dotnet build "$onnx_app/OnnxConsumer.csproj" -c Release -p:MLDiffusionVersion="$version" --nologo -v quiet -clp:ErrorsOnly
if grep -qiE '"(torchsharp|libtorch[^"]*|microsoft\.ml\.diffusion)/' "$onnx_app/obj/project.assets.json"; then
  echo "package check: the deploy-only application's restore brought $(grep -oiE '"(torchsharp|libtorch[^"]*|microsoft\.ml\.diffusion)/[0-9.a-z-]*"' "$onnx_app/obj/project.assets.json" | sort -u | tr '\n' ' ')" >&2
  exit 1
fi
for tfm in net8.0 net10.0; do
  bin="$onnx_app/bin/Release/$tfm/linux-x64"
  torch_files=$(find "$bin" -iname '*torch*' -o -iname 'libc10*' -o -iname 'Microsoft.ML.Diffusion.dll' | head -n 5)
  if [ -n "$torch_files" ]; then
    echo "package check: the deploy-only output for $tfm holds $torch_files" >&2
    exit 1
  fi
  if [ "$tfm" = net8.0 ]; then run=("$bin/OnnxConsumer"); else run=(dotnet "$bin/OnnxConsumer.dll"); fi
  generated=$("${run[@]}" generate "$work/model.onnx")
  echo "   $tfm onnx: $generated"
  case "$generated" in
    ".NET ${tfm#net}"*) ;;
    *) echo "package check: the deploy-only $tfm ran on '$generated', not .NET ${tfm#net}" >&2; exit 1 ;;
  esac
done

# The install size of each path: the net10.0 output folders (framework-dependent, so without the .NET runtime).
mib() { du -sb "$@" | awk '{ s += $1 } END { printf "%.1f MiB", s / 1048576 }'; }
onnx_bin="$onnx_app/bin/Release/net10.0/linux-x64"
# (ONNX Runtime's package copies its Windows onnxruntime.dll into every x64 output, Linux too: counted, and named.)
echo "   install size (net10.0 output folder): deploy-only $(mib "$onnx_bin") (libonnxruntime*.so $(mib "$onnx_bin"/libonnxruntime*.so), the Windows *.dll natives ORT's package adds $(mib "$onnx_bin"/onnxruntime*.dll)); TorchSharp consumer $(mib "$torch_bin") (lib*.so* $(mib "$torch_bin"/lib*.so*))"
echo "== deploy-only check: passed; it added $((deploy_seconds + SECONDS - deploy_start)) s (pack, export, build, run)"
echo "== package check: passed in ${SECONDS} s"
