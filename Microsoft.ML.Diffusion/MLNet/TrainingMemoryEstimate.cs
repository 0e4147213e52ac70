using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Microsoft.ML.Diffusion.Core.Networks;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// What training with a set of <see cref="DiffusionTrainerOptions"/> needs in memory, estimated from the options alone,
/// before anything is allocated (<see cref="DiffusionTrainerOptions.EstimateMemory"/>). <see cref="DiffusionTrainer.Fit"/>
/// compares it with the memory available and refuses, with an <see cref="InsufficientMemoryException"/> naming the sizes,
/// a run that cannot fit, instead of failing inside libtorch (or being killed by the system) after minutes.
/// </summary>
/// <remarks>
/// <para>The parts: the network's parameters, 24 bytes each (float32 weights, their gradients, AdamW's two moments, the
/// EMA copy and one transient copy while the optimizer's flat buffers are built); the activations autograd keeps for the
/// backward pass of one forward pass of <see cref="ImagesPerPass"/> images (the batch, or the micro-batch when it splits
/// the batch); the training images, read into memory twice while they are converted (8 bytes per pixel value).</para>
/// <para>The activations per image are a formula calibrated on the CPU (peak resident memory at two batch sizes, on
/// U-Nets of 32×32 and 64×64 images): for a <see cref="UNetOptions"/> 48 float32 values per channel and pixel of each
/// level's input and output, 10 per attention channel and pixel, and 6 per attention score of the full attention at the
/// deepest level; for a <see cref="DiTOptions"/> (14 + 3 × MLP ratio) values per token and channel and 3 per attention
/// score, per block. Another network kind is counted by its input alone (32 values per pixel value): the estimate is then
/// a floor. It is an order of magnitude, good to about a factor of 2: enough to refuse a batch of a million images or a
/// network of billions of parameters, not to fill memory to the last megabyte.</para>
/// </remarks>
public sealed class TrainingMemoryEstimate
{
    private const long BytesPerParameter = 24;
    private const long BytesPerDataValue = 8;

    internal TrainingMemoryEstimate(long parameterCount, long activationBytesPerImage, int imagesPerPass, long imageCount, long dataBytes, bool activationsKnown)
    {
        ParameterCount = parameterCount;
        ActivationBytesPerImage = activationBytesPerImage;
        ImagesPerPass = imagesPerPass;
        ImageCount = imageCount;
        DataBytes = dataBytes;
        ActivationsKnown = activationsKnown;
    }

    /// <summary>Gets the network's parameter count (computed from its options, without building it).</summary>
    public long ParameterCount { get; }

    /// <summary>Gets the bytes of the parameters and their training state: weights, gradients, AdamW moments, EMA.</summary>
    public long ParameterBytes => Saturate(ParameterCount, BytesPerParameter);

    /// <summary>Gets the bytes of activations one image adds to a forward and backward pass.</summary>
    public long ActivationBytesPerImage { get; }

    /// <summary>Gets the images of one forward and backward pass: the batch, or the micro-batch when it splits the batch.</summary>
    public int ImagesPerPass { get; }

    /// <summary>Gets the bytes of activations of one pass.</summary>
    public long ActivationBytes => Saturate(ActivationBytesPerImage, ImagesPerPass);

    /// <summary>Gets the number of training images the estimate was made for (0: not known).</summary>
    public long ImageCount { get; }

    /// <summary>Gets the bytes of the training images once read into memory.</summary>
    public long DataBytes { get; }

    /// <summary>Gets a value indicating whether the activations were estimated for the network's kind (false: its input alone, a floor).</summary>
    public bool ActivationsKnown { get; }

    /// <summary>Gets the total: parameters, activations and data.</summary>
    public long TotalBytes => Add(Add(ParameterBytes, ActivationBytes), DataBytes);

    /// <summary>
    /// The memory this process can still use, in bytes: on Linux the smaller of the kernel's estimate of the memory
    /// available without swapping (<c>MemAvailable</c> in <c>/proc/meminfo</c>) and the runtime's limit (a container's
    /// limit included, <see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>) less what this process already holds;
    /// elsewhere the latter alone. Null when neither can be read.
    /// </summary>
    /// <returns>The bytes, or null.</returns>
    public static long? AvailableBytes()
    {
        long? available = null;
        long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (total > 0)
        {
            using var self = System.Diagnostics.Process.GetCurrentProcess();
            available = Math.Max(0, total - self.WorkingSet64);
        }

        if (OperatingSystem.IsLinux())
        {
            try
            {
                string? line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemAvailable:", StringComparison.Ordinal));
                if (line is not null && long.TryParse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kib))
                {
                    long bytes = kib * 1024;
                    available = available is long a ? Math.Min(a, bytes) : bytes;
                }
            }
            catch (IOException)
            {
                // No /proc: the runtime's figure stands.
            }
        }

        return available;
    }

    /// <summary>Formats a number of bytes for a message: "512 MiB", "3.2 GiB".</summary>
    /// <param name="bytes">The bytes.</param>
    /// <returns>The text.</returns>
    public static string Format(long bytes) => bytes switch
    {
        < 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.#} KiB"),
        < 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:0} MiB"),
        < 1L << 40 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1073741824.0:0.#} GiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1099511627776.0:0.#} TiB"),
    };

    /// <summary>Describes the estimate: the total and its parts, e.g. "about 41.2 GiB (network: 2,614,657 parameters = 60 MiB ...)".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"about {Format(TotalBytes)} (network: {ParameterCount:N0} parameters = {Format(ParameterBytes)} with gradients, AdamW moments and EMA; "
        + $"activations: {ImagesPerPass:N0} images per pass × {Format(ActivationBytesPerImage)} = {Format(ActivationBytes)}{(ActivationsKnown ? string.Empty : " at least")}; "
        + $"data: {(ImageCount > 0 ? ImageCount.ToString("N0", CultureInfo.InvariantCulture) + " images = " + Format(DataBytes) : "not counted")})");

    /// <summary>
    /// Recognises libtorch's failure to allocate (on the CPU "can't allocate memory: you tried to allocate N bytes", on CUDA
    /// "CUDA out of memory. Tried to allocate …") and says it in one sentence with the size asked for; null for any other
    /// exception.
    /// </summary>
    /// <param name="exception">The exception libtorch's error arrived as (TorchSharp raises <c>ExternalException</c>).</param>
    /// <returns>The sentence, or null.</returns>
    public static string? DescribeNativeOutOfMemory(Exception? exception)
    {
        for (var ex = exception; ex is not null; ex = ex.InnerException)
        {
            string message = ex.Message;
            bool cpu = message.Contains("can't allocate memory", StringComparison.Ordinal) || message.Contains("not enough memory", StringComparison.Ordinal);
            bool cuda = message.Contains("out of memory", StringComparison.OrdinalIgnoreCase) && ex is not OutOfMemoryException;
            if (!cpu && !cuda)
            {
                continue;
            }

            var bytes = Regex.Match(message, @"allocate (\d+) bytes");
            var cudaSize = Regex.Match(message, @"[Tt]ried to allocate ([0-9.]+ [KMGT]?i?B)");
            string size = bytes.Success && long.TryParse(bytes.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out long n)
                ? Format(n)
                : cudaSize.Success ? cudaSize.Groups[1].Value : "an unknown amount";
            return cpu
                ? $"libtorch could not allocate {size} on the CPU (the system refused the allocation)"
                : $"libtorch could not allocate {size} on the GPU (CUDA out of memory)";
        }

        return null;
    }

    internal static TrainingMemoryEstimate For(DiffusionTrainerOptions options, long imageCount, int classCount)
    {
        var model = options.DescribeModel(classCount);
        var network = model.Network;
        long parameters = network.CountParameters() ?? 0;
        int height = model.ImageHeight, width = model.ImageWidth, channels = options.Channels;
        int perPass = options.MicroBatchSize is int m && m < options.BatchSize ? m : options.BatchSize;
        double values = network switch
        {
            UNetOptions unet => UNetActivations(unet, height, width),
            DiTOptions dit => DiTActivations(dit, height, width),
            _ => 32.0 * channels * height * width,
        };
        long perImage = values * 4 >= long.MaxValue ? long.MaxValue : (long)(values * 4);
        long data = Saturate(Saturate(Math.Max(0, imageCount), (long)channels * height * width), BytesPerDataValue);
        return new TrainingMemoryEstimate(parameters, perImage, perPass, Math.Max(0, imageCount), data, network is UNetOptions or DiTOptions);
    }

    // float32 values kept for the backward pass of one image (the constants are calibrated: see the remarks).
    private static double UNetActivations(UNetOptions unet, int height, int width)
    {
        double hidden = (double)unet.AttentionHeads * unet.AttentionDimHead;
        var dims = new[] { (double)unet.Dim }.Concat(unet.DimMults.Select(x => (double)unet.Dim * x)).ToArray();
        double total = 0, pixels = (double)height * width;
        for (int i = 0; i < dims.Length - 1; i++)
        {
            total += (48 * (dims[i] + dims[i + 1]) * pixels) + (10 * hidden * pixels);
            if (i == dims.Length - 2)
            {
                total += 6 * unet.AttentionHeads * pixels * pixels; // full attention at the deepest level (down, middle, up)
            }
            else
            {
                pixels /= 4;
            }
        }

        return total;
    }

    private static double DiTActivations(DiTOptions dit, int height, int width)
    {
        double tokens = (double)height / dit.PatchSize * width / dit.PatchSize;
        return dit.Depth * ((tokens * dit.HiddenSize * (14 + (3 * dit.MlpRatio))) + (3.0 * dit.Heads * tokens * tokens));
    }

    private static long Saturate(long a, long b) => a == 0 || b == 0 ? 0 : a > long.MaxValue / b ? long.MaxValue : a * b;

    private static long Add(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;
}
