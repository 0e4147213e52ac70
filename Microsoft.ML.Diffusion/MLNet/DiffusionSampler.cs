using System;
using System.Globalization;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.ML.Diffusion.Core.IO;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// A trained diffusion model as an ML.NET transformer: <see cref="Transform"/> adds generated images to any
/// <see cref="IDataView"/>, one per row.
/// </summary>
/// <remarks>
/// <para>Input columns (all optional): a seed column (Int32, UInt32 or Int64, default name "Seed") that fixes each row's
/// image, and for a class-conditional model a label column (the training label's name by default; key or integer type).
/// Rows without a seed column get seeds derived from <see cref="DiffusionSamplerOptions.Seed"/> and the row index.</para>
/// <para>Output columns: "GeneratedImage" (<see cref="MLImage"/>) and "GeneratedPixels" (Single vector of C·H·W values in
/// [0, 255], planar, as ExtractPixels makes). On the CPU the same seed (and label) gives the same bytes in any batch.</para>
/// <para><see cref="Transform"/> is lazy and streaming (each cursor generates one micro-batch of rows at a time as it
/// advances). The sampler is also a row-to-row mapper: <c>mlContext.Model.CreatePredictionEngine&lt;TSrc, TDst&gt;(sampler)</c>
/// (or a chain ending in it) generates one image per prediction, the same image <see cref="Transform"/> gives for that seed;
/// use one engine per thread (as ML.NET's engine pools do). By ML.NET's default an engine owns its transformer and
/// disposing the engine disposes the sampler; pass <c>new PredictionEngineOptions { OwnsTransformer = false }</c> to keep it.</para>
/// <para>Save it with <c>mlContext.Model.Save</c>; <c>mlContext.Model.Load</c> restores it in any process with no extra
/// call. ML.NET loads the assemblies a model file names: load only model files you trust.</para>
/// <para>Thread safety: <see cref="Generate"/>, <see cref="Transform"/> and the cursors of its output may be used from any
/// number of threads at once on one sampler; each call keeps its own state (noise generators, dispose scopes) and on the
/// CPU gives the bytes that sequential use gives (tested with 8 threads; see docs/reliability.md). Not thread-safe:
/// changing <see cref="Options"/> while another thread generates, and <see cref="Dispose"/> while any call runs.</para>
/// </remarks>
public sealed class DiffusionSampler : ITransformer, IDisposable
{
    internal const string LoaderSignature = "DiffusionSampler";
    private const string ModelSignature = "DIFFSMPL";
    private const uint MLNetEntryVersion = 0x00010001;
    private readonly IHost host;

    /// <summary>Initializes a new instance of the <see cref="DiffusionSampler"/> class around a trained model (which it then owns).</summary>
    /// <param name="env">The ML.NET environment (an <see cref="MLContext"/>).</param>
    /// <param name="model">The model.</param>
    /// <param name="options">Sampling settings; null keeps the model's saved defaults.</param>
    public DiffusionSampler(IHostEnvironment env, DiffusionModel model, DiffusionSamplerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(model);
        host = env.Register(nameof(DiffusionSampler));
        Model = model;
        Options = (options ?? model.Config.Sampling).Clone();
        Options.Validate();
    }

    /// <summary>Gets the trained model.</summary>
    public DiffusionModel Model { get; }

    /// <summary>Gets the sampling settings (a copy is taken at construction; changing it afterwards changes later transforms).</summary>
    public DiffusionSamplerOptions Options { get; }

    /// <summary>Gets a value indicating whether <see cref="GetRowToRowMapper"/> works: always true.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>Loads a sampler saved by <see cref="Save(MLContext, string)"/> or <c>mlContext.Model.Save</c>.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="path">The model file.</param>
    /// <returns>The sampler (the last stage, if the file holds a chain).</returns>
    /// <exception cref="InvalidDataException">The file is damaged, truncated, of a newer format or holds no diffusion sampler.</exception>
    public static DiffusionSampler Load(MLContext mlContext, string path)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Model file '{path}' does not exist.", path);
        }

        CheckIsZipArchive(path);
        ITransformer loaded;
        try
        {
            loaded = mlContext.Model.Load(path, out _);
        }
        catch (Exception ex) when (Innermost(ex) is InvalidDataException data)
        {
            string message = data.Message.Contains(ModelSource.Unknown, StringComparison.Ordinal)
                ? data.Message.Replace(ModelSource.Unknown, $"Model file '{path}'", StringComparison.Ordinal)
                : data.Message.Contains(Path.GetFileName(path), StringComparison.Ordinal) ? data.Message : $"Model file '{path}' is damaged: {ExplainZipError(data.Message)}";
            throw new InvalidDataException(message, data);
        }
        catch (Exception ex) when (ex is FormatException or InvalidOperationException or EndOfStreamException or IOException or TargetInvocationException)
        {
            throw new InvalidDataException($"Model file '{path}' could not be read as an ML.NET model: {Innermost(ex).Message}", ex);
        }

        return Find(loaded) ?? throw new InvalidDataException($"Model file '{path}' holds no DiffusionSampler (it holds {loaded.GetType().Name}).");
    }

    /// <summary>Writes this sampler to an ordinary ML.NET model file (the same as <c>mlContext.Model.Save(sampler, null, path)</c>).</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="path">The destination; written to a temporary file first, flushed to the disk, then renamed into place.</param>
    public void Save(MLContext mlContext, string path)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp";
        mlContext.Model.Save(this, null, temp);
        AtomicFile.FlushToDisk(temp);
        AtomicFile.Replace(temp, full);
    }

    /// <summary>Generates <paramref name="count"/> images with seeds derived from the options' seed.</summary>
    /// <param name="count">How many.</param>
    /// <param name="options">Settings for this call; null uses <see cref="Options"/>.</param>
    /// <param name="label">A class label for every image (class-conditional models), or null.</param>
    /// <returns>The images.</returns>
    public IReadOnlyList<MLImage> Generate(int count, DiffusionSamplerOptions? options = null, int? label = null)
    {
        if (count < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, "Count must be positive.");
        }

        options ??= Options;
        options.Validate();
        CheckLabel(label);
        var seeds = Enumerable.Range(0, count).Select(i => SeededNoise.DeriveSeed(options.Seed, i)).ToArray();
        var labels = label is int l ? Enumerable.Repeat(l, count).ToArray() : null;
        var pixels = Model.GeneratePixels(seeds, labels, options);
        return pixels.Select(p => PixelLayout.ToMLImage(p, Model.Channels, Model.ImageHeight, Model.ImageWidth)).ToArray();
    }

    /// <summary>
    /// Generates the images of one shard of what <see cref="Generate(int, DiffusionSamplerOptions?, int?)"/> would give for
    /// <paramref name="count"/>: the images of indices <see cref="SeedShard.Range"/>, byte for byte those images (each image
    /// depends only on its seed). For independent jobs of a batch system, each writing its share (<c>--shard i/N</c>).
    /// </summary>
    /// <param name="count">How many images all shards together make.</param>
    /// <param name="shard">Which share this call makes.</param>
    /// <param name="options">Settings for this call; null uses <see cref="Options"/>.</param>
    /// <param name="label">A class label for every image (class-conditional models), or null.</param>
    /// <returns>This shard's images, in order; the first is image <c>shard.Range(count).Start</c>.</returns>
    public IReadOnlyList<MLImage> GenerateShard(int count, SeedShard shard, DiffusionSamplerOptions? options = null, int? label = null)
    {
        var pixels = GenerateRange(count, shard.Range(count), ref options, label);
        return pixels.Select(p => PixelLayout.ToMLImage(p, Model.Channels, Model.ImageHeight, Model.ImageWidth)).ToArray();
    }

    /// <summary>
    /// Generates what <see cref="Generate(int, DiffusionSamplerOptions?, int?)"/> gives, split over the ranks of
    /// <see cref="Collective.World"/> (under <c>mpirun</c>): each rank generates a contiguous share of the seeds, then every
    /// rank receives every image, in order — the same bytes as one process. Every rank must call it with the same arguments.
    /// </summary>
    /// <param name="count">How many images.</param>
    /// <param name="options">Settings for this call; null uses <see cref="Options"/>.</param>
    /// <param name="label">A class label for every image (class-conditional models), or null.</param>
    /// <returns>All the images, on every rank.</returns>
    public IReadOnlyList<MLImage> GenerateOnAllRanks(int count, DiffusionSamplerOptions? options = null, int? label = null)
    {
        var world = Collective.World;
        var shard = new SeedShard(world.Rank, world.WorldSize);
        var mine = GenerateRange(count, shard.Range(count), ref options, label);
        int size = Model.Channels * Model.ImageHeight * Model.ImageWidth;
        var images = new List<MLImage>(count);
        foreach (var part in world.AllGather(mine.SelectMany(p => p).ToArray(), "gather the generated images", world.Timeout * 4))
        {
            for (int start = 0; start < part.Length; start += size)
            {
                images.Add(PixelLayout.ToMLImage(part.AsSpan(start, size).ToArray(), Model.Channels, Model.ImageHeight, Model.ImageWidth));
            }
        }

        return images;
    }

    private IReadOnlyList<byte[]> GenerateRange(int count, (int Start, int End) range, ref DiffusionSamplerOptions? options, int? label)
    {
        if (count < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, "Count must be positive.");
        }

        options ??= Options;
        options.Validate();
        CheckLabel(label);
        var chosen = options;
        var seeds = Enumerable.Range(range.Start, range.End - range.Start).Select(i => SeededNoise.DeriveSeed(chosen.Seed, i)).ToArray();
        if (seeds.Length == 0)
        {
            return Array.Empty<byte[]>();
        }

        var labels = label is int l ? Enumerable.Repeat(l, seeds.Length).ToArray() : null;
        return Model.GeneratePixels(seeds, labels, options);
    }

    /// <summary>Gets the schema <see cref="Transform"/> gives for an input schema: its columns plus the two generated ones.</summary>
    /// <param name="inputSchema">The input schema.</param>
    /// <returns>The output schema.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The seed or label column has the wrong type (the message names it).</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return GenerationBinding.Create(this, inputSchema).OutputSchema;
    }

    /// <summary>
    /// Adds a generated image to every row of <paramref name="input"/>. Lazy and streaming: each cursor generates its rows
    /// in batches of one micro-batch as it advances and keeps one batch, so memory does not grow with the row count, and
    /// a cursor that reads no generated column generates nothing.
    /// </summary>
    /// <param name="input">Any data view (an optional seed column and, for a class-conditional model, a label column).</param>
    /// <returns>The input's columns plus the generated image and pixel columns.</returns>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new GeneratedImagesDataView(input, this);
    }

    /// <summary>
    /// Gets a row-to-row mapper that generates each row's image on its own (what <c>mlContext.Model.CreatePredictionEngine</c>
    /// uses). A row's image equals the one <see cref="Transform"/> gives for the same seed and label; on the CPU bit for bit.
    /// </summary>
    /// <param name="inputSchema">The schema of the rows to map.</param>
    /// <returns>The mapper; it may be shared between threads, each row it makes is used by one thread at a time.</returns>
    /// <remarks>One row costs the network as much as a whole micro-batch (the CPU network runs on padded micro-batches so
    /// that bits do not depend on the batch): use <see cref="Transform"/> or <see cref="Generate"/> for many images.</remarks>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return new GeneratedImagesMapper(this, inputSchema);
    }

    /// <summary>Releases the model's tensors.</summary>
    public void Dispose() => Model.Dispose();

    /// <summary>Writes the sampler into an ML.NET model file (see <see cref="DiffusionModelFile"/> for the layout).</summary>
    /// <param name="ctx">ML.NET's save context.</param>
    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        MLNetInternals.BeginSave(ctx, VersionInfo());
        var config = Model.Config;
        config.Sampling = Options.Clone();
        byte[] weights = Model.SaveWeights();
        bool inline = !MLNetInternals.InRepository(ctx);
        DiffusionModelFile.WriteHeader(MLNetInternals.Writer(ctx), config, weights, inline);
        if (!inline)
        {
            MLNetInternals.SaveBinaryStream(ctx, DiffusionModelFile.WeightsEntryName, w => w.Write(weights));
        }
    }

    /// <summary>Raised with the number of images before every generation call of <see cref="Transform"/> cursors and mappers (tests count calls).</summary>
    internal event Action<int>? Generating;

    /// <summary>Generates images for seeds and labels (−1 = unconditional) with the given options: 8-bit planar pixels.</summary>
    internal byte[][] GeneratePixels(IReadOnlyList<long> seeds, IReadOnlyList<int> labels, DiffusionSamplerOptions options, IReadOnlyList<float[]>? inputs = null, IReadOnlyList<float[]>? masks = null)
    {
        Generating?.Invoke(seeds.Count);
        return Model.GeneratePixels(seeds, labels, options, inputs, masks);
    }

    internal void CheckLabel(int? label)
    {
        if (label is int l && l != -1 && (Model.ClassCount == 0 || l < 0 || l >= Model.ClassCount))
        {
            throw new ArgumentOutOfRangeException(
                nameof(label), l, Model.ClassCount == 0 ? "This model is not class-conditional." : $"Labels must be in [0, {Model.ClassCount - 1}] (or −1 for none).");
        }
    }

    private static object VersionInfo() =>
        MLNetInternals.VersionInfo(ModelSignature, MLNetEntryVersion, LoaderSignature, typeof(DiffusionSampler).Assembly.GetName().Name!);

    // Found by ML.NET through the assembly-level LoadableClass attribute (eng/ModelLoaderWeaving.targets).
#pragma warning disable IDE0051 // called by ML.NET through reflection
    private static DiffusionSampler Create(IHostEnvironment env, object ctx)
#pragma warning restore IDE0051
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(ctx);
        string source = ModelSource.Describe(ctx);
        MLNetInternals.BeginLoad(ctx, VersionInfo());
        var header = DiffusionModelFile.ReadHeader(MLNetInternals.Reader(ctx), source);
        byte[]? weights = null;
        if (header.Inline)
        {
            weights = DiffusionModelFile.ReadWeights(MLNetInternals.Reader(ctx), header, source);
        }
        else if (!MLNetInternals.TryLoadBinaryStream(ctx, DiffusionModelFile.WeightsEntryName, r => weights = DiffusionModelFile.ReadWeights(r, header, source, zipEntry: true)))
        {
            throw new InvalidDataException($"{source} is missing its '{DiffusionModelFile.WeightsEntryName}' entry.");
        }

        var model = DiffusionModelFile.CreateModel(header, weights!, source);
        return new DiffusionSampler(env, model, header.Config.Sampling);
    }

    // An ML.NET model file is a zip archive: an empty file, or one that does not start as a zip archive does, is named for
    // what it is before ML.NET's reader says "Invalid argument" or "End of Central Directory record could not be found".
    private static void CheckIsZipArchive(string path)
    {
        Span<byte> head = stackalloc byte[4];
        int read;
        long length;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            length = stream.Length;
            read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }

        if (length == 0)
        {
            throw new InvalidDataException($"Model file '{path}' is empty (0 bytes): it was not written completely (a run stopped while saving it?) or is not a model file.");
        }

        if (read < 4 || head[0] != (byte)'P' || head[1] != (byte)'K' || head[2] != 3 || head[3] != 4)
        {
            throw new InvalidDataException(string.Create(
                CultureInfo.InvariantCulture,
                $"Model file '{path}' is not an ML.NET model file: it does not start as a zip archive does (its first bytes are {Convert.ToHexString(head[..read])}; {length:N0} bytes in all)."));
        }
    }

    // The zip reader's words for damage, said as what they mean for a model file.
    private static string ExplainZipError(string message) => message switch
    {
        _ when message.Contains("unsupported compression method", StringComparison.Ordinal) =>
            $"the compressed data of one of its entries is corrupt (the zip reader says: {message})",
        _ when message.Contains("End of Central Directory", StringComparison.Ordinal) =>
            $"it is cut short or its end is damaged: the zip archive's directory, at the end of the file, is missing ({message})",
        _ => message,
    };

    private static DiffusionSampler? Find(ITransformer transformer) => transformer switch
    {
        DiffusionSampler sampler => sampler,
        IEnumerable<ITransformer> chain => chain.Select(Find).LastOrDefault(s => s is not null),
        _ => null,
    };

    private static Exception Innermost(Exception ex)
    {
        while (ex.InnerException is not null)
        {
            ex = ex.InnerException;
        }

        return ex;
    }
}
