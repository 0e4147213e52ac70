using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>
/// The Inception network of FID as the papers compute it: pytorch-fid's FID InceptionV3 (the TensorFlow weights of
/// 2015-12-05, converted), loaded from a file the user supplies — <see cref="WeightFileName"/> from pytorch-fid's GitHub
/// release <c>fid_weights</c>; nothing is ever downloaded. <see cref="Features"/> gives the 2048-d pool3 features in
/// double precision, with pytorch-fid's input handling: bilinear resize to 299×299 (align_corners = False), then
/// [0, 1] → [−1, 1].
/// </summary>
/// <remarks>
/// <para>Grayscale images are repeated over three channels, which is what pytorch-fid's <c>Image.convert('RGB')</c> does
/// to a grayscale PNG. <see cref="FeaturesOfModelImages"/> first rounds model-space images to the 8-bit pixels a PNG
/// would hold (<see cref="ImageConversion.ModelToPixels"/>) and divides by 255, as torchvision's <c>ToTensor</c> does
/// with the file, so the features of generated images equal those pytorch-fid computes from the saved PNGs.</para>
/// <para>The file is a <c>torch.save</c>d state dict, in the zip format (PyTorch ≥ 1.6, read with TorchSharp.PyBridge)
/// or the legacy format pytorch-fid's release was written in (read by <see cref="LegacyTorchFile"/>); pickles are read
/// by a reader that builds dictionaries and tensors and runs no code from the file. Every tensor of the network must be
/// found with its shape (<c>num_batches_tracked</c> may be absent, as in files older than PyTorch 0.4.1) and nothing else
/// may be there, or an <see cref="InvalidDataException"/> names the file and the key.</para>
/// </remarks>
public sealed class FidInception : IDisposable
{
    /// <summary>The name of pytorch-fid's weight file (release <c>fid_weights</c> of github.com/mseitzer/pytorch-fid).</summary>
    public const string WeightFileName = "pt_inception-2015-12-05-6726825d.pth";

    /// <summary>The size of the pool3 features.</summary>
    public const int FeatureSize = 2048;

    /// <summary>The side the network sees.</summary>
    public const int InputSize = 299;

    private static readonly long[] InputShape = { InputSize, InputSize };
    private static readonly Scalar MaxPixel = 255.ToScalar();
    private readonly FidInceptionV3 network;
    private readonly Device device;
    private int batchSize = 50;

    private FidInception(FidInceptionV3 network, Device device)
    {
        this.network = network;
        this.device = device;
    }

    /// <summary>Gets the file the weights were read from.</summary>
    public string Source { get; private init; } = string.Empty;

    /// <summary>Gets or sets the images per forward pass (pytorch-fid's default 50).</summary>
    public int BatchSize
    {
        get => batchSize;
        set => batchSize = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), "The batch size must be at least 1.");
    }

    /// <summary>Loads pytorch-fid's weights.</summary>
    /// <param name="path">The weight file (<see cref="WeightFileName"/>).</param>
    /// <param name="device">"cpu" (default), "cuda" or "cuda:N".</param>
    /// <returns>The network, in evaluation mode on the device.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a state dict of the FID InceptionV3 (the message names the file and the key).</exception>
    public static FidInception Load(string path, string device = "cpu")
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var target = Torch.ParseDevice(device);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Inception weight file '{path}' does not exist. Download {WeightFileName} from pytorch-fid's GitHub release 'fid_weights' (see the README, section Inception FID).", path);
        }

        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> state;
        try
        {
            state = ReadStateDict(path);
        }
        catch (Exception ex) when (ex is not InvalidDataException)
        {
            throw new InvalidDataException($"Inception weight file '{path}' could not be read as a torch.save'd state dict: {ex.Message}", ex);
        }

        var network = new FidInceptionV3();
        try
        {
            CopyWeights(network, state, path);
            network.eval();
            network.to(target);
            network.FoldBatchNorms();
        }
        catch
        {
            network.Dispose();
            throw;
        }

        return new FidInception(network, target) { Source = path };
    }

    /// <summary>
    /// The network with TorchSharp's initial (random) weights, for timing only: it runs as fast as the real one, but its
    /// features and any FID computed from them mean nothing. <see cref="Source"/> says so.
    /// </summary>
    /// <param name="device">"cpu" (default), "cuda" or "cuda:N".</param>
    /// <returns>The network, in evaluation mode on the device.</returns>
    public static FidInception CreateWithRandomWeights(string device = "cpu")
    {
        var target = Torch.ParseDevice(device);
        var network = new FidInceptionV3();
        network.eval();
        network.to(target);
        network.FoldBatchNorms();
        return new FidInception(network, target) { Source = "random weights (timing only; not FID)" };
    }

    /// <summary>Pool3 features of images with pixel values in [0, 1], as pytorch-fid computes them.</summary>
    /// <param name="images">N×C×H×W, C = 1 (repeated to RGB) or 3, values in [0, 1], any side (resized to 299).</param>
    /// <returns>N×2048 features in double precision, on the CPU.</returns>
    public Tensor Features(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || (images.shape[1] != 1 && images.shape[1] != 3) || images.shape[0] < 1)
        {
            throw new ArgumentException($"Expected N×C×H×W images with C = 1 or 3; got shape [{string.Join(", ", images.shape)}].", nameof(images));
        }

        long n = images.shape[0];
        using var outer = NewDisposeScope();
        var result = empty(new[] { n, (long)FeatureSize }, float64, device: CPU);
        using (no_grad())
        {
            for (long start = 0; start < n; start += batchSize)
            {
                using var scope = NewDisposeScope();
                long end = Math.Min(n, start + batchSize);
                var x = images.narrow(0, start, end - start).to(float32).to(device);
                if (x.min().item<float>() < -1e-6f || x.max().item<float>() > 1.000001f)
                {
                    throw new ArgumentException("FidInception.Features expects pixel values in [0, 1] (as pytorch-fid's ToTensor gives); for model-space images in [−1, 1] use FeaturesOfModelImages.", nameof(images));
                }

                result.narrow(0, start, end - start).copy_(network.call(ChannelsLast(NetworkInput(x))).to(float64).cpu());
            }
        }

        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Pool3 features of model-space images in [−1, 1] (generated or read by the library): each is first rounded to
    /// the 8-bit pixels its PNG holds, then divided by 255, so the features equal pytorch-fid's of the saved files.
    /// </summary>
    /// <param name="images">N×C×H×W in [−1, 1], C = 1 or 3.</param>
    /// <returns>N×2048 features in double precision, on the CPU.</returns>
    public Tensor FeaturesOfModelImages(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        using var scope = NewDisposeScope();
        return Features(ModelImagesToUnit(images)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// What the network sees of images in [0, 1]: grayscale repeated to RGB, bilinearly resized to 299×299
    /// (align_corners = False, skipped at 299), then 2x − 1 — pytorch-fid's <c>InceptionV3.forward</c> before block 0.
    /// </summary>
    internal static Tensor NetworkInput(Tensor x)
    {
        using var scope = NewDisposeScope();
        if (x.shape[1] == 1)
        {
            x = x.expand(-1, 3, -1, -1);
        }

        if (x.shape[2] != InputSize || x.shape[3] != InputSize)
        {
            x = nn.functional.interpolate(x, InputShape, mode: InterpolationMode.Bilinear, align_corners: false);
        }

        return x.mul(Scalars.Two).sub(Scalars.One).MoveToOuterDisposeScope();
    }

    // N×C×H×W with channels-last strides (N×H×W×C in memory), the layout oneDNN's CPU convolutions run in without reorders.
    internal static Tensor ChannelsLast(Tensor x)
    {
        using var scope = NewDisposeScope();
        return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).MoveToOuterDisposeScope();
    }

    /// <summary>Model-space images as torchvision's ToTensor reads their PNGs: the 8-bit pixels divided by 255.</summary>
    internal static Tensor ModelImagesToUnit(Tensor images)
    {
        using var scope = NewDisposeScope();
        return ImageConversion.ModelToPixels(images).div(MaxPixel).MoveToOuterDisposeScope();
    }

    /// <summary>Releases the network.</summary>
    public void Dispose() => network.Dispose();

    /// <summary>Reads a torch.save'd state dict (zip or legacy format) as CPU tensors by key.</summary>
    internal static Dictionary<string, Tensor> ReadStateDict(string path)
    {
        Hashtable table;
        if (LegacyTorchFile.IsZip(path))
        {
            table = PyTorchUnpickler.UnpickleStateDict(path);
        }
        else
        {
            table = LegacyTorchFile.Read(path);
        }

        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry item in table)
        {
            if (item.Key is string key && item.Value is Tensor tensor)
            {
                state[key] = tensor;
            }
        }

        if (state.Count == 0)
        {
            throw new InvalidDataException($"Inception weight file '{path}' holds no tensors (it is not a state dict).");
        }

        return state;
    }

    private static void CopyWeights(FidInceptionV3 network, Dictionary<string, Tensor> state, string path)
    {
        var expected = network.state_dict();
        using (no_grad())
        {
            foreach (var (key, target) in expected)
            {
                if (!state.TryGetValue(key, out var source))
                {
                    if (key.EndsWith("num_batches_tracked", StringComparison.Ordinal))
                    {
                        continue; // files from before PyTorch 0.4.1 do not have it; it plays no part in evaluation
                    }

                    throw new InvalidDataException($"Inception weight file '{path}' has no '{key}' (shape [{string.Join(", ", target.shape)}]); it is not pytorch-fid's FID InceptionV3 ({WeightFileName}).");
                }

                if (!source.shape.SequenceEqual(target.shape))
                {
                    throw new InvalidDataException($"Inception weight file '{path}': '{key}' has shape [{string.Join(", ", source.shape)}], expected [{string.Join(", ", target.shape)}].");
                }

                if (!source.is_floating_point() && target.is_floating_point())
                {
                    throw new InvalidDataException($"Inception weight file '{path}': '{key}' is {source.dtype}, expected a floating-point tensor.");
                }

                if (target.is_floating_point() && !source.isfinite().all().item<bool>())
                {
                    throw new InvalidDataException($"Inception weight file '{path}': '{key}' holds values that are not finite (a damaged file).");
                }

                target.copy_(source);
            }
        }

        var unexpected = state.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (unexpected.Count > 0)
        {
            throw new InvalidDataException($"Inception weight file '{path}' has {unexpected.Count} key(s) the FID InceptionV3 does not: {string.Join(", ", unexpected.Take(5).Select(k => $"'{k}'"))}{(unexpected.Count > 5 ? ", …" : string.Empty)}; it is not pytorch-fid's {WeightFileName}.");
        }
    }
}
