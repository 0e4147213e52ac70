using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.IO;
using Microsoft.ML.Diffusion.Core.Sampling;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// Writes a diffusion model as an ONNX file (opset 18, IR version 8) that ONNX Runtime, ML.NET's <c>ApplyOnnxModel</c>
/// or any ONNX runtime runs without TorchSharp: the network alone, or a whole deterministic sampler (DDIM with η = 0 or
/// DPM-Solver++(2M), with classifier-free guidance) as one graph. The weights are initializers; the model's settings are
/// the file's metadata (<see cref="OnnxMetadataKeys"/>).
/// </summary>
/// <remarks>
/// Built-in networks only (<c>UNet</c>, <c>DiT</c>, conditional or not, any objective, fixed or learned variance); the
/// image size is fixed to the model's, the batch is free. Export of anything else throws a
/// <see cref="NotSupportedException"/> that names what is not supported. The graph is written by this library (TorchSharp
/// has no ONNX exporter): each module's forward mirrored in ONNX operations, checked against TorchSharp by the tests.
/// </remarks>
public static class DiffusionOnnxExport
{
    /// <summary>The format version written in <see cref="OnnxMetadataKeys.Format"/>.</summary>
    public const int FormatVersion = 1;

    // Metadata is read by people too: "dpm-solver++", not "dpm-solver\u002B\u002B".
    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() }, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes <paramref name="diffusion"/> as an ONNX file.</summary>
    /// <param name="diffusion">The model (its network in evaluation mode; on any device: the weights are copied to the CPU).</param>
    /// <param name="path">The destination; written to a temporary file and renamed into place.</param>
    /// <param name="options">What to export; null = the DDIM-50 sampler with x̂₀ clipping.</param>
    /// <param name="metadata">More metadata entries (for example class names), or null.</param>
    /// <exception cref="NotSupportedException">The network or the scheduler has no ONNX form (the message says which).</exception>
    public static void Export(GaussianDiffusion diffusion, string path, OnnxExportOptions? options = null, IEnumerable<KeyValuePair<string, string>>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(diffusion);
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new OnnxExportOptions();
        var model = Build(diffusion, options, metadata);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            model.WriteTo(stream);
        }

        AtomicFile.FlushToDisk(temp);
        AtomicFile.Replace(temp, full);
    }

    /// <summary>Returns the ONNX file's bytes instead of writing a file (see <see cref="Export"/>).</summary>
    /// <param name="diffusion">The model.</param>
    /// <param name="options">What to export; null = the DDIM-50 sampler with x̂₀ clipping.</param>
    /// <param name="metadata">More metadata entries, or null.</param>
    /// <returns>The serialized ModelProto.</returns>
    public static byte[] ToBytes(GaussianDiffusion diffusion, OnnxExportOptions? options = null, IEnumerable<KeyValuePair<string, string>>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(diffusion);
        using var stream = new MemoryStream();
        Build(diffusion, options ?? new OnnxExportOptions(), metadata).WriteTo(stream);
        return stream.ToArray();
    }

    private static OnnxModelProto Build(GaussianDiffusion diffusion, OnnxExportOptions options, IEnumerable<KeyValuePair<string, string>>? extra)
    {
        var g = new OnnxGraphBuilder(options.Content == OnnxGraphContent.Network ? "denoiser" : "sampler");
        var entries = Describe(diffusion);
        if (options.Content == OnnxGraphContent.Network)
        {
            var network = DenoiserGraph.Create(g, diffusion.Model, diffusion.ImageHeight, diffusion.ImageWidth);
            g.Input("x", OnnxDataType.Float, null, diffusion.Channels, diffusion.ImageHeight, diffusion.ImageWidth);
            g.Input("t", OnnxDataType.Int64, new long?[] { null });
            string? classes = null;
            if (diffusion.Model.ClassCount > 0)
            {
                g.Input("class", OnnxDataType.Int64, new long?[] { null });
                classes = "class";
            }

            g.NodeTo("prediction", "Identity", new[] { network.Emit(g, "x", "t", classes) });
            g.Output("prediction", OnnxDataType.Float, null, diffusion.Model.OutputChannels, diffusion.ImageHeight, diffusion.ImageWidth);
            entries[OnnxMetadataKeys.Content] = "network";
        }
        else
        {
            var scheduler = options.Scheduler ?? new DdimScheduler { Steps = 50 };
            var sampler = SamplerGraph.Create(g, diffusion, scheduler, options.ClipDenoised);
            sampler.Build(g, options.Loop);
            entries[OnnxMetadataKeys.Content] = "sampler";
            entries[OnnxMetadataKeys.Scheduler] = JsonNode.Parse(SchedulerRegistry.ToJson(scheduler))!.ToJsonString(Json);
            entries[OnnxMetadataKeys.VisitedTimesteps] = string.Join(",", sampler.Timesteps.Select(t => t.ToString(CultureInfo.InvariantCulture)));
            entries[OnnxMetadataKeys.ClipDenoised] = options.ClipDenoised ? "true" : "false";
            entries[OnnxMetadataKeys.Loop] = options.Loop == OnnxSamplerLoop.Loop ? "loop" : "unrolled";
            entries[OnnxMetadataKeys.Noise] = OnnxMetadataKeys.NoiseDescription;
        }

        foreach (var (key, value) in extra ?? Array.Empty<KeyValuePair<string, string>>())
        {
            entries[key] = value;
        }

        return new OnnxModelProto
        {
            Graph = g.Graph,
            Metadata = entries.ToList(),
            DocString = options.Content == OnnxGraphContent.Network
                ? "A Microsoft.ML.Diffusion denoiser: x (N×C×H×W), t (N) [, class (N)] -> prediction."
                : "A Microsoft.ML.Diffusion sampler: noise (N×C×H×W) [, class (N), guidance (N)] -> images in [0, 1], pixels (bytes).",
        };
    }

    private static SortedDictionary<string, string> Describe(GaussianDiffusion diffusion)
    {
        string Text(int value) => value.ToString(CultureInfo.InvariantCulture);
        var network = diffusion.Model.Options;
        return new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            [OnnxMetadataKeys.Format] = Text(FormatVersion),
            [OnnxMetadataKeys.Channels] = Text(diffusion.Channels),
            [OnnxMetadataKeys.Height] = Text(diffusion.ImageHeight),
            [OnnxMetadataKeys.Width] = Text(diffusion.ImageWidth),
            [OnnxMetadataKeys.ClassCount] = Text(network.ClassCount),
            [OnnxMetadataKeys.Timesteps] = Text(diffusion.Timesteps),
            [OnnxMetadataKeys.Schedule] = diffusion.Schedule.Kind.ToString(),
            [OnnxMetadataKeys.Objective] = diffusion.Objective.ToString(),
            [OnnxMetadataKeys.Variance] = diffusion.Variance.ToString(),
            [OnnxMetadataKeys.Network] = network.Kind,
            [OnnxMetadataKeys.NetworkSettings] = JsonSerializer.Serialize(network, network.GetType(), Json),
        };
    }
}
