using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Microsoft.ML.Diffusion.Onnx;

/// <summary>
/// Generates images from a sampler exported by Microsoft.ML.Diffusion (<c>DiffusionModel.ExportOnnx</c>) with ONNX
/// Runtime alone: no TorchSharp, no libtorch. The same seeds (and labels and guidance scale) give the images the TorchSharp
/// <c>DiffusionSampler</c> gives with the same scheduler, to within float rounding (docs/onnx.md states the tolerance).
/// </summary>
/// <remarks>
/// The execution provider is the caller's: pass <see cref="SessionOptions"/> with the provider appended (and reference the
/// ONNX Runtime native package that has it: Microsoft.ML.OnnxRuntime for the CPU, Microsoft.ML.OnnxRuntime.Gpu for CUDA).
/// Thread-safe: ONNX Runtime sessions run concurrently.
/// </remarks>
public sealed class OnnxDiffusionGenerator : IDisposable
{
    private const string FormatKey = "mldiffusion.format";
    private const int SupportedFormat = 1;
    private readonly InferenceSession session;
    private readonly int imageSize;

    /// <summary>Initializes a new instance of the <see cref="OnnxDiffusionGenerator"/> class from an exported sampler file.</summary>
    /// <param name="path">The .onnx file written by the sampler export.</param>
    /// <param name="sessionOptions">ONNX Runtime's settings (execution provider, threads, optimization level), or null for the defaults (CPU).</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an ONNX model, not one exported by Microsoft.ML.Diffusion, of a newer format, or holds the network alone; the message names the file.</exception>
    public OnnxDiffusionGenerator(string path, SessionOptions? sessionOptions = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"No exported diffusion model at '{path}'.", path);
        }

        Path = path;
        try
        {
            session = sessionOptions is null ? new InferenceSession(path) : new InferenceSession(path, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid ONNX model (damaged or not ONNX): {e.Message}", e);
        }

        try
        {
            Metadata = session.ModelMetadata.CustomMetadataMap;
            if (!Metadata.TryGetValue(FormatKey, out var format))
            {
                throw new InvalidDataException($"'{path}' is an ONNX model but not one exported by Microsoft.ML.Diffusion (it has no '{FormatKey}' metadata).");
            }

            if (!int.TryParse(format, NumberStyles.Integer, CultureInfo.InvariantCulture, out int version) || version > SupportedFormat)
            {
                throw new InvalidDataException($"'{path}' was exported by a newer Microsoft.ML.Diffusion (format {format}); this package reads format {SupportedFormat}.");
            }

            if (Value("mldiffusion.content") != "sampler")
            {
                throw new InvalidDataException($"'{path}' holds the network alone (exported with OnnxGraphContent.Network); generating needs a sampler export. Run the network with an InferenceSession and your own loop, or export the sampler.");
            }

            Channels = Number("mldiffusion.channels");
            ImageHeight = Number("mldiffusion.height");
            ImageWidth = Number("mldiffusion.width");
            ClassCount = Number("mldiffusion.class_count");
            imageSize = checked(Channels * ImageHeight * ImageWidth);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Gets the file the generator was loaded from.</summary>
    public string Path { get; }

    /// <summary>Gets the image channels.</summary>
    public int Channels { get; }

    /// <summary>Gets the image height.</summary>
    public int ImageHeight { get; }

    /// <summary>Gets the image width.</summary>
    public int ImageWidth { get; }

    /// <summary>Gets the number of classes of a class-conditional model (that label means "no label"), or 0.</summary>
    public int ClassCount { get; }

    /// <summary>Gets the file's metadata (the model's settings, the scheduler, the class names when known).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// Generates one image per seed, as planar 8-bit pixels (C·H·W bytes each, rounded as the library rounds them): the
    /// pixels <c>DiffusionSampler</c> gives for the same seeds.
    /// </summary>
    /// <param name="seeds">One seed per image (see <see cref="TorchNoise.DeriveSeed"/> for the seeds <c>Generate(count)</c> uses).</param>
    /// <param name="labels">One label per image for a class-conditional model (−1 or the class count = no label), or null for none.</param>
    /// <param name="guidanceScale">The classifier-free guidance scale w (class-conditional models; 1 = none).</param>
    /// <returns>One byte array per image.</returns>
    public byte[][] GeneratePixels(IReadOnlyList<long> seeds, IReadOnlyList<int>? labels = null, float guidanceScale = 1f)
    {
        using var results = Run(seeds, labels, guidanceScale);
        var pixels = results.First(r => r.Name == "pixels").AsTensor<byte>().ToArray();
        return Enumerable.Range(0, seeds.Count).Select(i => pixels.AsSpan(i * imageSize, imageSize).ToArray()).ToArray();
    }

    /// <summary>Generates one image per seed, as N·C·H·W floats in [0, 1] (image after image, planar).</summary>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="labels">One label per image for a class-conditional model (−1 or the class count = no label), or null for none.</param>
    /// <param name="guidanceScale">The classifier-free guidance scale w (class-conditional models; 1 = none).</param>
    /// <returns>The images.</returns>
    public float[] Generate(IReadOnlyList<long> seeds, IReadOnlyList<int>? labels = null, float guidanceScale = 1f)
    {
        using var results = Run(seeds, labels, guidanceScale);
        return results.First(r => r.Name == "images").AsTensor<float>().ToArray();
    }

    /// <summary>Runs the sampler graph on given starting noise (N·C·H·W values, x_T), for callers that draw their own.</summary>
    /// <param name="noise">x_T, N·C·H·W standard normal values.</param>
    /// <param name="labels">One label per image for a class-conditional model, or null for none.</param>
    /// <param name="guidanceScale">The classifier-free guidance scale w.</param>
    /// <returns>The images, N·C·H·W floats in [0, 1].</returns>
    public float[] GenerateFromNoise(float[] noise, IReadOnlyList<int>? labels = null, float guidanceScale = 1f)
    {
        ArgumentNullException.ThrowIfNull(noise);
        if (noise.Length == 0 || noise.Length % imageSize != 0)
        {
            throw new ArgumentException($"Expected a whole number of {Channels}×{ImageHeight}×{ImageWidth} images of noise; got {noise.Length} values.", nameof(noise));
        }

        using var results = RunNoise(noise, noise.Length / imageSize, labels, guidanceScale);
        return results.First(r => r.Name == "images").AsTensor<float>().ToArray();
    }

    /// <summary>Releases the ONNX Runtime session.</summary>
    public void Dispose() => session.Dispose();

    private IDisposableReadOnlyCollection<DisposableNamedOnnxValue> Run(IReadOnlyList<long> seeds, IReadOnlyList<int>? labels, float guidanceScale)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        if (seeds.Count == 0)
        {
            throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        }

        return RunNoise(TorchNoise.Batch(seeds, imageSize), seeds.Count, labels, guidanceScale);
    }

    private IDisposableReadOnlyCollection<DisposableNamedOnnxValue> RunNoise(float[] noise, int count, IReadOnlyList<int>? labels, float guidanceScale)
    {
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("noise", new DenseTensor<float>(noise, new[] { count, Channels, ImageHeight, ImageWidth })),
        };
        if (ClassCount > 0)
        {
            if (labels is not null && labels.Count != count)
            {
                throw new ArgumentException($"Expected {count} labels, one per image; got {labels.Count}.", nameof(labels));
            }

            var classes = new long[count];
            for (int i = 0; i < count; i++)
            {
                int label = labels?[i] ?? -1;
                if (label < -1 || label > ClassCount)
                {
                    throw new ArgumentOutOfRangeException(nameof(labels), label, $"Labels must be in [0, {ClassCount}), or −1 / {ClassCount} for no label.");
                }

                classes[i] = label < 0 ? ClassCount : label;
            }

            inputs.Add(NamedOnnxValue.CreateFromTensor("class", new DenseTensor<long>(classes, new[] { count })));
            inputs.Add(NamedOnnxValue.CreateFromTensor("guidance", new DenseTensor<float>(Enumerable.Repeat(guidanceScale, count).ToArray(), new[] { count })));
        }
        else if (labels is not null && labels.Any(l => l >= 0))
        {
            throw new ArgumentException($"'{Path}' is an unconditional model; it takes no labels.", nameof(labels));
        }

        return session.Run(inputs);
    }

    private string Value(string key) =>
        Metadata.TryGetValue(key, out var value) ? value : throw new InvalidDataException($"'{Path}' lacks the '{key}' metadata of a Microsoft.ML.Diffusion export.");

    private int Number(string key) =>
        int.TryParse(Value(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n >= 0
            ? n
            : throw new InvalidDataException($"'{Path}': metadata '{key}' is not a number: '{Value(key)}'.");
}
