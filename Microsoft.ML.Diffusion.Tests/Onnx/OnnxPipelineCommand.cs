using System;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Onnx;

namespace Microsoft.ML.Diffusion.Tests.Onnx;

/// <summary>
/// "onnx-pipeline FILE SEED:LABEL …" (a child process of the tests): generates with ML.NET's <c>ApplyOnnxModel</c> on an
/// exported sampler, the starting noise drawn by the deploy-only package — no TorchSharp type is touched — then prints one
/// line of hexadecimal pixels per image and, last, the loaded assemblies whose name contains "Torch" ("torch: none" when
/// there are none).
/// </summary>
internal static class OnnxPipelineCommand
{
    public static bool TryRun(string[] args, out int code)
    {
        code = 0;
        if (args.Length < 2 || args[0] != "onnx-pipeline")
        {
            return false;
        }

        string file = args[1];
        var requests = args.Skip(2).Select(a => a.Split(':')).Select(p => (Seed: long.Parse(p[0], CultureInfo.InvariantCulture), Label: int.Parse(p[1], CultureInfo.InvariantCulture))).ToArray();
        const int imageSize = 64;
        var rows = requests.Select(r => new NoiseRow
        {
            Noise = TorchNoise.Normal(r.Seed, imageSize),
            Class = new[] { (long)r.Label },
            Guidance = new[] { 2f },
        }).ToList();

        var mlContext = new MLContext(seed: 1);
        var data = mlContext.Data.LoadFromEnumerable(rows);
        var shapes = new System.Collections.Generic.Dictionary<string, int[]>
        {
            ["noise"] = new[] { 1, 1, 8, 8 },
            ["class"] = new[] { 1 },
            ["guidance"] = new[] { 1 },
            ["images"] = new[] { 1, 1, 8, 8 },
        };
        var pipeline = mlContext.Transforms.ApplyOnnxModel(new[] { "images" }, new[] { "noise", "class", "guidance" }, file, shapes, gpuDeviceId: null, fallbackToCpu: false);
        var output = pipeline.Fit(data).Transform(data);
        foreach (var image in output.GetColumn<VBuffer<float>>("images"))
        {
            var pixels = image.DenseValues().Select(v => (byte)Math.Clamp(Math.Round(v * 255f, MidpointRounding.ToEven), 0, 255)).ToArray();
            Console.WriteLine(Convert.ToHexString(pixels));
        }

        var torch = AppDomain.CurrentDomain.GetAssemblies().Select(a => a.GetName().Name ?? string.Empty).Where(n => n.Contains("Torch", StringComparison.OrdinalIgnoreCase)).ToArray();
        Console.WriteLine("torch: " + (torch.Length == 0 ? "none" : string.Join(",", torch)));
        return true;
    }

    private sealed class NoiseRow
    {
        [VectorType(1, 1, 8, 8)]
        [ColumnName("noise")]
        public float[] Noise { get; set; } = Array.Empty<float>();

        [VectorType(1)]
        [ColumnName("class")]
        public long[] Class { get; set; } = Array.Empty<long>();

        [VectorType(1)]
        [ColumnName("guidance")]
        public float[] Guidance { get; set; } = Array.Empty<float>();
    }
}
