using System;
using System.Collections.Generic;
using System.Text.Json;
using Microsoft.ML.Diffusion.Export;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// ONNX export of a trained model (<see cref="DiffusionOnnxExport"/>): the network alone, or a whole deterministic sampler
/// as one graph that ONNX Runtime, ML.NET's <c>ApplyOnnxModel</c> or the deploy-only package
/// <c>Microsoft.ML.Diffusion.Onnx</c> run without TorchSharp (docs/onnx.md).
/// </summary>
public static class OnnxExportExtensions
{
    /// <summary>Writes the model as an ONNX file.</summary>
    /// <param name="model">The trained model.</param>
    /// <param name="path">The destination file.</param>
    /// <param name="options">What to export; null = the DDIM-50 sampler with x̂₀ clipping.</param>
    /// <exception cref="NotSupportedException">The network or the scheduler has no ONNX form (the message says which).</exception>
    public static void ExportOnnx(this DiffusionModel model, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        DiffusionOnnxExport.Export(model.Diffusion, path, options, Metadata(model));
    }

    /// <summary>
    /// Writes the sampler's model as an ONNX file; with no <paramref name="options"/> the graph is the sampler's own
    /// scheduler and x̂₀ clipping (<see cref="DiffusionSampler.Options"/>), which must then be deterministic (DDIM with
    /// η = 0 or DPM-Solver++).
    /// </summary>
    /// <param name="sampler">The fitted or loaded sampler.</param>
    /// <param name="path">The destination file.</param>
    /// <param name="options">What to export; null = the sampler's scheduler and clipping.</param>
    /// <exception cref="NotSupportedException">The network or the scheduler has no ONNX form (the message says which).</exception>
    public static void ExportOnnx(this DiffusionSampler sampler, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        options ??= new OnnxExportOptions { Scheduler = sampler.Options.Scheduler, ClipDenoised = sampler.Options.ClipDenoised };
        DiffusionOnnxExport.Export(sampler.Model.Diffusion, path, options, Metadata(sampler.Model));
    }

    private static List<KeyValuePair<string, string>> Metadata(DiffusionModel model)
    {
        var entries = new List<KeyValuePair<string, string>>();
        if (model.ClassNames is { Count: > 0 } names)
        {
            entries.Add(new(OnnxMetadataKeys.ClassNames, JsonSerializer.Serialize(names)));
        }

        return entries;
    }
}
