using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// A trained diffusion model: its configuration and its network (with the EMA weights), wrapped in a
/// <see cref="GaussianDiffusion"/>. Self-contained and device-agnostic; owned and disposed by its <see cref="DiffusionSampler"/>.
/// </summary>
/// <remarks>
/// Generating from several threads at once is safe: the network runs in evaluation mode without gradients (libtorch's
/// gradient mode and TorchSharp's dispose scopes are per thread), only reads its weights, and each call draws its noise
/// from its own per-image generators. Training, moving the model to another device and <see cref="Dispose"/> are not
/// thread-safe and must not overlap with generation.
/// </remarks>
public sealed class DiffusionModel : IDisposable
{
    // 16-bit copies of the network for sampling (DiffusionSamplerOptions.Precision), one per precision, made on first use.
    private readonly Dictionary<Precision, GaussianDiffusion> reducedCopies = new();

    internal DiffusionModel(DiffusionModelConfig config, GaussianDiffusion diffusion)
    {
        Config = config;
        Diffusion = diffusion;
    }

    /// <summary>Gets the diffusion (schedule, network, maths).</summary>
    public GaussianDiffusion Diffusion { get; }

    /// <summary>Gets the image height.</summary>
    public int ImageHeight => Config.Diffusion.ImageHeight;

    /// <summary>Gets the image width.</summary>
    public int ImageWidth => Config.Diffusion.ImageWidth;

    /// <summary>Gets the image channels.</summary>
    public int Channels => Config.Diffusion.Network.Channels;

    /// <summary>Gets the number of classes of a class-conditional model, or 0.</summary>
    public int ClassCount => Config.Diffusion.Network.ClassCount;

    /// <summary>Gets the class names (from the label column's key values) of a class-conditional model, if known.</summary>
    public IReadOnlyList<string>? ClassNames => Config.ClassNames;

    /// <summary>Gets the number of optimizer steps the model was trained for.</summary>
    public int TrainedSteps => Config.TrainedSteps;

    /// <summary>Gets a copy of the network's kind and shape (a <see cref="UNetOptions"/> for a U-Net).</summary>
    public DenoiserOptions Network => Config.Diffusion.Network.Clone();

    /// <summary>Gets the device the network lives on, as "cpu" or "cuda:N".</summary>
    public string Device => Diffusion.Device.ToString();

    internal DiffusionModelConfig Config { get; }

    /// <summary>Releases the network's tensors.</summary>
    public void Dispose()
    {
        DropReducedCopies();
        Diffusion.Dispose();
    }

    /// <summary>
    /// Moves the network and the schedule to a device: "cpu", "cuda" or "cuda:N". A model loaded from a file starts on
    /// the CPU; a freshly trained one where it was trained. Not to be called while images are being generated.
    /// </summary>
    /// <param name="device">The device.</param>
    /// <exception cref="ArgumentException">The device is unknown, or CUDA was asked for and is not available.</exception>
    public void MoveTo(string device)
    {
        var target = Torch.ParseDevice(device);
        DropReducedCopies();
        Diffusion.to(target);
    }

    /// <summary>The network's weights in TorchSharp's format.</summary>
    internal byte[] SaveWeights()
    {
        long parameters = Diffusion.Model.ParameterCount;
        if (parameters > ModelLimits.MaxParameters)
        {
            // An imported network can be larger than a model file holds (guided-diffusion's 256×256 and 512×512 models).
            throw new InvalidOperationException(
                $"The {Network.Kind} network has {parameters:N0} parameters; a model file holds at most {ModelLimits.MaxParameters:N0} (its float32 weights must fit one 2 GiB entry). Sample with the model in this process instead.");
        }

        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            Diffusion.Model.save(writer);
        }

        return stream.ToArray();
    }

    /// <summary>Rebuilds a model from its config and weights, on the CPU.</summary>
    internal static DiffusionModel Load(DiffusionModelConfig config, byte[] weights)
    {
        var diffusion = config.Diffusion.CreateDiffusion();
        try
        {
            using var stream = new MemoryStream(weights, writable: false);
            using var reader = new BinaryReader(stream);
            diffusion.Model.load(reader, strict: true);
            diffusion.eval();
            return new DiffusionModel(config, diffusion);
        }
        catch
        {
            diffusion.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The diffusion to sample with in a precision: this model's for Float32, otherwise the same diffusion around a 16-bit
    /// copy of the network, made once and kept until the model moves or is disposed.
    /// </summary>
    internal GaussianDiffusion DiffusionFor(Precision precision)
    {
        if (precision == Precision.Float32)
        {
            return Diffusion;
        }

        lock (reducedCopies)
        {
            if (!reducedCopies.TryGetValue(precision, out var copy))
            {
                copy = Diffusion.WithReducedPrecisionNetwork(precision);
                copy.eval();
                reducedCopies.Add(precision, copy);
            }

            return copy;
        }
    }

    private void DropReducedCopies()
    {
        lock (reducedCopies)
        {
            foreach (var copy in reducedCopies.Values)
            {
                copy.Dispose();
            }

            reducedCopies.Clear();
        }
    }

    /// <summary>Generates images for the given seeds and labels (label −1 or null = unconditional) as 8-bit planar pixels.</summary>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="labels">Labels, or null.</param>
    /// <param name="options">The sampler's options (including the edit strength and resampling).</param>
    /// <param name="inputs">Images to edit (planar pixels in [0, 255], C·H·W each), or null to generate from noise.</param>
    /// <param name="masks">Masks for inpainting (H·W or C·H·W each, non-zero = keep), or null.</param>
    internal byte[][] GeneratePixels(IReadOnlyList<long> seeds, IReadOnlyList<int>? labels, DiffusionSamplerOptions options, IReadOnlyList<float[]>? inputs = null, IReadOnlyList<float[]>? masks = null)
    {
        var loop = options.CreateSamplingLoop();
        using var scope = NewDisposeScope();
        Tensor? classes = null;
        if (labels is not null && ClassCount > 0)
        {
            classes = tensor(labels.Select(l => l < 0 ? (long)ClassCount : l).ToArray(), dtype: int64);
        }

        ImageEdit? edit = null;
        if (inputs is not null)
        {
            long n = seeds.Count;
            var start = ImageConversion.PixelsToModel(tensor(inputs.SelectMany(p => p).ToArray(), new long[] { n, Channels, ImageHeight, ImageWidth }));
            Tensor? keep = null;
            if (masks is not null)
            {
                long maskChannels = masks[0].Length / ((long)ImageHeight * ImageWidth);
                keep = (tensor(masks.SelectMany(p => p).ToArray(), new long[] { n, maskChannels, ImageHeight, ImageWidth }).ne(Scalars.Zero)).to(float32);
            }

            edit = new ImageEdit(start, keep) { Strength = options.Strength, Resampling = options.Resampling };
        }

        var images = loop.Sample(DiffusionFor(options.Precision), seeds, classes, null, edit);
        var pixels = ImageConversion.ModelToPixels(images).to(ScalarType.Byte).cpu().contiguous();
        long size = pixels.shape[1] * pixels.shape[2] * pixels.shape[3];
        byte[] all = pixels.data<byte>().ToArray();
        var result = new byte[seeds.Count][];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = all.AsSpan((int)(i * size), (int)size).ToArray();
        }

        return result;
    }
}
