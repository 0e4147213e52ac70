#!/usr/bin/env bash
# Can a stranger install the package? Packs Microsoft.ML.Diffusion, then builds eng/consumer in a temporary folder
# OUTSIDE the repository against that package from a local feed, for net8.0 and net10.0, and for each: trains a few
# steps and saves an ML.NET model file, then loads it in a fresh process and generates. The two processes must generate
# the same pixels. All of it twice: with the ML.NET the package resolves (5.0.1) and with ML.NET 6.0.0 added by the
# consumer. Exits non-zero on any failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# A version of its own, so that no earlier package of the same version in the NuGet cache can stand in for this one.
version="0.1.0-ci.$(date +%s).$$"
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cleanup() { rm -rf "$work" "$packages/microsoft.ml.diffusion/$version"; }
trap cleanup EXIT

echo "== package check: packing Microsoft.ML.Diffusion $version"
dotnet pack "$repo/Microsoft.ML.Diffusion/Microsoft.ML.Diffusion.csproj" -c Release -o "$work/feed" -p:Version="$version" --nologo -v quiet
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
  done
done
echo "== package check: passed in ${SECONDS} s"
