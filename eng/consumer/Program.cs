// The consumer check: "fit MODEL" trains a tiny model for a few steps through the ML.NET API and saves it; "load MODEL"
// loads it in this fresh process with mlContext.Model.Load. Both print the runtime and the SHA-256 of the pixels the
// model generates for seeds 1 and 2, which eng/check-package.sh compares. "export MODEL ONNX" exports the saved model's
// sampler to ONNX and writes ONNX.pixels: the pixels TorchSharp generates for seeds 1 to 8 (planar bytes, image after
// image), which eng/onnx-consumer (ONNX Runtime only) must reproduce.
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;

if (args is ["export", string saved, string onnx])
{
    var context = new MLContext(seed: 1);
    using var sampler = DiffusionSampler.Load(context, saved);
    sampler.ExportOnnx(onnx);
    IDataView eight = context.Data.LoadFromEnumerable(Enumerable.Range(1, 8).Select(s => new SeedRow { Seed = s }));
    byte[] torchPixels = sampler.Transform(eight).GetColumn<float[]>("GeneratedPixels").SelectMany(p => p).Select(p => (byte)p).ToArray();
    File.WriteAllBytes(onnx + ".pixels", torchPixels);
    Console.WriteLine($"{RuntimeInformation.FrameworkDescription} exported {new FileInfo(onnx).Length} bytes; {torchPixels.Length} TorchSharp pixels");
    return 0;
}

if (args.Length != 2 || args[0] is not ("fit" or "load"))
{
    Console.Error.WriteLine("usage: Consumer fit|load MODEL.zip, or Consumer export MODEL.zip MODEL.onnx");
    return 2;
}

var mlContext = new MLContext(seed: 1);
ITransformer model;
if (args[0] == "fit")
{
    // 32 gray 8×8 pictures of a bright bar at a varying row.
    var rows = Enumerable.Range(0, 32).Select(i => new ImageRow
    {
        Pixels = Enumerable.Range(0, 64).Select(p => p / 8 == i % 8 ? 230f : 20f).ToArray(),
    }).ToArray();
    IDataView data = mlContext.Data.LoadFromEnumerable(rows);
    var trainer = mlContext.Generative().Diffusion(new DiffusionTrainerOptions
    {
        ImageColumnName = "Pixels",
        ImageSize = 8,
        Channels = 1,
        Timesteps = 20,
        Network = new UNetOptions { Dim = 8, DimMults = new[] { 1, 2 }, AttentionHeads = 2, AttentionDimHead = 8 },
        BatchSize = 8,
        TrainSteps = 3,
        Seed = 1,
        Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 4 } },
    });
    model = trainer.Fit(data);
    mlContext.Model.Save(model, data.Schema, args[1]);
}
else
{
    model = mlContext.Model.Load(args[1], out _);
}

IDataView seeds = mlContext.Data.LoadFromEnumerable(new[] { new SeedRow { Seed = 1 }, new SeedRow { Seed = 2 } });
float[] pixels = model.Transform(seeds).GetColumn<float[]>("GeneratedPixels").SelectMany(p => p).ToArray();
if (pixels.Length != 2 * 64 || pixels.Any(p => !float.IsFinite(p) || p < 0 || p > 255))
{
    Console.Error.WriteLine($"unexpected generated pixels: {pixels.Length} values");
    return 1;
}

Console.WriteLine($"{RuntimeInformation.FrameworkDescription} {Convert.ToHexString(SHA256.HashData(MemoryMarshal.AsBytes(pixels.AsSpan())))}");
return 0;

internal sealed class ImageRow
{
    [VectorType(64)]
    public float[] Pixels { get; set; } = Array.Empty<float>();
}

internal sealed class SeedRow
{
    public int Seed { get; set; }
}
