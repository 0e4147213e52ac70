using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Security.Cryptography;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Import;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>A tiny model (4×4 images, a U-Net of width 4, T = 10) that saves and loads in milliseconds.</summary>
internal static class TinyModelFile
{
    public static DiffusionModelConfig Config() => new()
    {
        Diffusion = new GaussianDiffusionOptions
        {
            ImageHeight = 4,
            ImageWidth = 4,
            Schedule = BetaSchedule.Linear,
            Betas = NoiseSchedule.Linear(10).Betas.ToArray(),
            Objective = PredictionTarget.Noise,
            Loss = DiffusionLoss.MeanSquaredError,
            Variance = VarianceType.FixedSmall,
            Network = new UNetOptions { Dim = 4, DimMults = new[] { 1, 2 }, Channels = 1, AttentionHeads = 1, AttentionDimHead = 4 },
        },
        Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 2 } },
    };

    /// <summary>A sampler around a freshly initialised (seeded) network for the config.</summary>
    public static DiffusionSampler Sampler(MLContext mlContext, DiffusionModelConfig config, int seed = 1)
    {
        manual_seed(seed);
        var diffusion = config.Diffusion.CreateDiffusion();
        diffusion.eval();
        return new DiffusionSampler(mlContext, new DiffusionModel(config, diffusion));
    }

    public static byte[] Save(MLContext mlContext, DiffusionSampler sampler, string path)
    {
        mlContext.Model.Save(sampler, null, path);
        return File.ReadAllBytes(path);
    }

    /// <summary>Everything a loaded sampler's output depends on: its configuration (with the sampler settings) and weights.</summary>
    public static string Digest(DiffusionSampler sampler) =>
        DiffusionModelFile.ConfigJson(sampler.Model.Config) + "|" + DiffusionModelFile.ConfigJson(new DiffusionModelConfig { Sampling = sampler.Options })
        + "|" + Convert.ToHexString(SHA256.HashData(sampler.Model.SaveWeights()));
}

/// <summary>An ML.NET model file holding a tiny diffusion sampler, loaded with <see cref="DiffusionSampler.Load"/>.</summary>
internal sealed class ModelFileTarget : IDamageTarget, IDisposable
{
    private readonly MLContext mlContext = new(seed: 1);

    public ModelFileTarget(string directory)
    {
        CasePath = Path.Combine(directory, "damaged-model.zip");
        using var sampler = TinyModelFile.Sampler(mlContext, TinyModelFile.Config());
        Original = TinyModelFile.Save(mlContext, sampler, Path.Combine(directory, "model.zip"));
        Focus = OutsideEntry(Original, DiffusionModelFile.WeightsEntryName);
    }

    public string Name => "model file (ML.NET zip)";

    public byte[] Original { get; }

    public string CasePath { get; }

    public string Load()
    {
        using var sampler = DiffusionSampler.Load(mlContext, CasePath);
        return TinyModelFile.Digest(sampler);
    }

    public bool IsUndetectable(DamageCase damage, string digest) => false;

    /// <summary>Gets everything but the compressed weights: ML.NET's entries, our header, the zip directory.</summary>
    public (int Start, int Length)[]? Focus { get; }

    public byte[] Finish(byte[] damaged) => damaged;

    public void Dispose()
    {
    }

    private static (int Start, int Length)[] OutsideEntry(byte[] zip, string name)
    {
        long compressed;
        using (var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read))
        {
            compressed = archive.Entries.Single(e => e.FullName.EndsWith(name, StringComparison.Ordinal)).CompressedLength;
        }

        byte[] needle = System.Text.Encoding.UTF8.GetBytes(name);
        for (int i = 0; i + 30 < zip.Length; i++)
        {
            if (zip[i] == 0x50 && zip[i + 1] == 0x4b && zip[i + 2] == 3 && zip[i + 3] == 4)
            {
                int nameLength = BitConverter.ToUInt16(zip, i + 26), extraLength = BitConverter.ToUInt16(zip, i + 28);
                if (zip.AsSpan(i + 30, nameLength).EndsWith(needle))
                {
                    int data = i + 30 + nameLength + extraLength;
                    int end = data + (int)compressed;
                    return new[] { (0, data), (end, zip.Length - end) };
                }
            }
        }

        throw new InvalidDataException($"no local header for {name}");
    }
}

/// <summary>A training checkpoint of the tiny model after two steps, restored with <see cref="Checkpoint.Read"/>.</summary>
internal sealed class CheckpointTarget : IDamageTarget, IDisposable
{
    private const string Fingerprint = "damage-campaign";
    private readonly string rewriteDirectory;
    private readonly GaussianDiffusion diffusion;
    private readonly FusedAdamW optimizer;
    private readonly ExponentialMovingAverage ema;
    private readonly Generator noise = new(1, CPU);
    private readonly Generator order = new(2, CPU);
    private readonly TrainingState state;

    private readonly bool resealed;

    /// <param name="directory">Where to write.</param>
    /// <param name="resealed">Damage only the content and recompute the SHA-256 (a hostile file), so that the parser sees it.</param>
    public CheckpointTarget(string directory, bool resealed = false)
    {
        this.resealed = resealed;
        CasePath = Path.Combine(directory, resealed ? "hostile.ckpt" : "damaged.ckpt");
        rewriteDirectory = Path.Combine(directory, "rewritten");
        string written = Path.Combine(directory, "written");
        var config = TinyModelFile.Config();
        var options = new DiffusionTrainerOptions
        {
            BatchSize = 2, TrainSteps = 2, LearningRate = 1e-3, LogEvery = 100, Network = config.Diffusion.Network,
            CheckpointDirectory = written, CheckpointEvery = 2,
        };
        manual_seed(1);
        using (var trained = config.Diffusion.CreateDiffusion())
        using (var data = new TrainingImages(rand(4, 1, 4, 4) * 2 - 1, null, 0, null))
        {
            new DiffusionTrainingLoop(trained, options.Training, _ => { }, _ => { }).Run(data, seed: 3, Fingerprint);
        }

        Original = File.ReadAllBytes(Checkpoint.FindLatest(written)!);
        if (resealed)
        {
            Original = Original[..^32];
        }

        diffusion = config.Diffusion.CreateDiffusion();
        optimizer = new FusedAdamW(diffusion.Model.parameters(), options.LearningRate, beta1: 0.9, beta2: 0.99, weightDecay: options.WeightDecay);
        ema = new ExponentialMovingAverage(optimizer, options.EmaDecay);
        state = new TrainingState(diffusion.Model, optimizer, ema, noise, order, randperm(4).DetachFromDisposeScope(), Fingerprint);
    }

    public string Name => resealed ? "training checkpoint, SHA-256 recomputed after the damage (hostile)" : "training checkpoint";

    public byte[] Original { get; }

    public string CasePath { get; }

    /// <summary>Restores the checkpoint into live objects, writes them back out and returns the digest of that file.</summary>
    public string Load()
    {
        Checkpoint.Read(CasePath, state);
        if (Directory.Exists(rewriteDirectory))
        {
            Directory.Delete(rewriteDirectory, recursive: true);
        }

        Checkpoint.Write(rewriteDirectory, state, keep: 1);
        return Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Checkpoint.FindLatest(rewriteDirectory)!)));
    }

    /// <summary>A hostile file may hold any values that pass every check: loading them is not a failure.</summary>
    public bool IsUndetectable(DamageCase damage, string digest) => resealed;

    public (int Start, int Length)[]? Focus => null;

    public byte[] Finish(byte[] damaged) => resealed ? damaged.Concat(SHA256.HashData(damaged)).ToArray() : damaged;

    public void Dispose()
    {
        state.Dispose();
        ema.Dispose();
        optimizer.Dispose();
        diffusion.Dispose();
        noise.Dispose();
        order.Dispose();
    }
}

/// <summary>An IDX image file (raw or gzip) read with <see cref="IdxReader.ReadImages"/>.</summary>
internal sealed class IdxTarget : IDamageTarget
{
    private const int HeaderBytes = 16;
    private readonly bool gzip;

    public IdxTarget(string directory, bool gzip)
    {
        this.gzip = gzip;
        CasePath = Path.Combine(directory, gzip ? "damaged-images.idx.gz" : "damaged-images.idx");
        var random = new Random(5);
        byte[] pixels = new byte[20 * 8 * 8];
        random.NextBytes(pixels);
        byte[] raw = new byte[] { 0, 0, 8, 3, 0, 0, 0, 20, 0, 0, 0, 8, 0, 0, 0, 8 }.Concat(pixels).ToArray();
        if (gzip)
        {
            using var output = new MemoryStream();
            using (var stream = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
            {
                stream.Write(raw);
            }

            Original = output.ToArray();
        }
        else
        {
            Original = raw;
        }
    }

    public string Name => gzip ? "IDX images, gzip" : "IDX images, raw";

    public byte[] Original { get; }

    public string CasePath { get; }

    public string Load()
    {
        var images = IdxReader.ReadImages(CasePath);
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{images.Count}×{images.Rows}×{images.Columns}|")
            + Convert.ToHexString(SHA256.HashData(images.Pixels.Span));
    }

    /// <summary>Gets the 16-byte header of a raw file.</summary>
    public (int Start, int Length)[]? Focus => gzip ? null : new[] { (0, HeaderBytes) };

    public byte[] Finish(byte[] damaged) => damaged;

    /// <summary>Raw IDX has no checksum: changed pixel bytes are undetectable, but the header and the size must be checked.</summary>
    public bool IsUndetectable(DamageCase damage, string digest) =>
        !gzip && damage.Kind != DamageKind.Truncate && damage.FirstChangedOffset >= HeaderBytes && digest.StartsWith("20×8×8|", StringComparison.Ordinal);
}

/// <summary>
/// A hostile model stream: the configuration's JSON and the weights are damaged, then written with the library's own
/// header writer (both SHA-256s recomputed), so that every damaged value reaches the parser, the limits and the network.
/// Read the way <see cref="DiffusionSampler"/>'s loader reads a stream with inline weights.
/// </summary>
internal sealed class HostileModelTarget : IDamageTarget
{
    private readonly int jsonLength;

    public HostileModelTarget(string directory)
    {
        CasePath = Path.Combine(directory, "hostile-model.bin");
        using var sampler = TinyModelFile.Sampler(new MLContext(seed: 1), TinyModelFile.Config());
        byte[] json = System.Text.Encoding.UTF8.GetBytes(DiffusionModelFile.ConfigJson(sampler.Model.Config));
        jsonLength = json.Length;
        Original = json.Concat(sampler.Model.SaveWeights()).ToArray();
        Focus = new[] { (0, jsonLength) };
    }

    public string Name => "model stream, both SHA-256s recomputed after the damage (hostile)";

    /// <summary>Gets the configuration's UTF-8 JSON followed by the weights; half of the flips and zeroed ranges hit the JSON.</summary>
    public byte[] Original { get; }

    public string CasePath { get; }

    public (int Start, int Length)[]? Focus { get; }

    public byte[] Finish(byte[] damaged)
    {
        int split = Math.Min(jsonLength, damaged.Length);
        string json = System.Text.Encoding.UTF8.GetString(damaged, 0, split);
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            DiffusionModelFile.WriteHeader(writer, json, damaged[split..], inline: true);
        }

        return stream.ToArray();
    }

    public string Load()
    {
        string source = $"Model file '{CasePath}'";
        using var stream = File.OpenRead(CasePath);
        using var reader = new BinaryReader(stream);
        var header = DiffusionModelFile.ReadHeader(reader, source);
        byte[] weights = DiffusionModelFile.ReadWeights(reader, header, source);
        using var model = DiffusionModelFile.CreateModel(header, weights, source);
        return DiffusionModelFile.ConfigJson(model.Config) + "|" + Convert.ToHexString(SHA256.HashData(model.SaveWeights()));
    }

    /// <summary>A hostile file may hold any values that pass every check.</summary>
    public bool IsUndetectable(DamageCase damage, string digest) => true;
}
