using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Shape of the <see cref="UNet"/> noise predictor. The layers match denoising-diffusion-pytorch 2.1.1's
/// <c>Unet</c> for the same <see cref="Dim"/> and <see cref="DimMults"/>, so parameter counts compare one to one.
/// </summary>
public sealed class UNetOptions : DenoiserOptions
{
    /// <summary>The kind's name in model files.</summary>
    public const string KindName = "UNet";

    /// <inheritdoc/>
    public override string Kind => KindName;

    // Each level halves the image: 16 levels already need sides divisible by 2^15, more than the largest image side
    // (GaussianDiffusionOptions.MaxImageSide, 2^13) allows.
    private const int MaxLevels = 16;

    // The widest level (Dim × multiplier, and Dim itself), and the most attention heads and channels per head: far above
    // any model trained on one machine, low enough that no parameter count overflows.
    private const int MaxWidth = 16_384;
    private const int MaxAttention = 4096;

    /// <summary>Gets or sets the base width (channels of the first level). Default 32.</summary>
    public int Dim { get; set; } = 32;

    /// <summary>Gets or sets the width multiplier of each level; the input size must divide by 2^(levels − 1). Default (1, 2, 4).</summary>
    public IReadOnlyList<int> DimMults { get; set; } = new[] { 1, 2, 4 };

    /// <summary>Gets or sets the dropout probability inside the ResNet blocks. Default 0.</summary>
    public double Dropout { get; set; }

    /// <summary>Gets or sets the number of attention heads. Default 4.</summary>
    public int AttentionHeads { get; set; } = 4;

    /// <summary>Gets or sets the width of one attention head. Default 32.</summary>
    public int AttentionDimHead { get; set; } = 32;

    /// <summary>Gets the number of resolution levels.</summary>
    public int Levels => DimMults.Count;

    /// <summary>Gets the factor every image side must divide by: 2^(levels − 1).</summary>
    public override int SizeDivisor => 1 << (DimMults.Count - 1);

    /// <inheritdoc/>
    public override Denoiser CreateDenoiser() => new UNet(this);

    /// <inheritdoc/>
    public override long? CountParameters() => ParameterCount(this);

    /// <summary>Returns a deep copy.</summary>
    /// <returns>The copy.</returns>
    public override UNetOptions Clone() => new()
    {
        Dim = Dim,
        DimMults = DimMults.ToArray(),
        Channels = Channels,
        Dropout = Dropout,
        AttentionHeads = AttentionHeads,
        AttentionDimHead = AttentionDimHead,
        LearnedVariance = LearnedVariance,
        ClassCount = ClassCount,
    };

    /// <inheritdoc/>
    public override string DescribeSizeDivisor() => string.Create(
        CultureInfo.InvariantCulture, $"2^(levels − 1) for a U-Net with {Levels} levels (DimMults); resize the images or use fewer levels");

    /// <summary>
    /// Throws a clear exception for an invalid shape: <see cref="Dim"/> even and in [4, 16384]; 1 to 16 levels whose widths
    /// Dim × multiplier are at most 16384; <see cref="Dropout"/> in [0, 1); heads and head widths in [1, 4096].
    /// </summary>
    protected override void ValidateShape()
    {
        if (Dim < 4 || Dim % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(Dim), Dim, $"UNetOptions.Dim must be even and at least 4 (the sinusoidal time embedding has Dim/2 frequencies, at least 2); got {Dim}.");
        }

        if (Dim > MaxWidth)
        {
            throw new ArgumentOutOfRangeException(nameof(Dim), Dim, Invariant($"U-Net Dim {Dim} is too wide: UNetOptions.Dim must be at most {MaxWidth}."));
        }

        if (DimMults is null || DimMults.Count < 1 || DimMults.Count > MaxLevels || DimMults.Any(m => m < 1))
        {
            throw new ArgumentOutOfRangeException(
                nameof(DimMults), Invariant($"UNetOptions.DimMults must hold between 1 and {MaxLevels} positive multipliers (one per resolution level); got {DimMults?.Count ?? 0} levels."));
        }

        if (DimMults.Any(m => (long)m * Dim > MaxWidth))
        {
            throw new ArgumentOutOfRangeException(
                nameof(DimMults), Invariant($"U-Net multipliers ({string.Join(", ", DimMults)}) × Dim {Dim}: every level's width must be at most {MaxWidth}."));
        }

        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout))
        {
            throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "UNetOptions.Dropout must be in [0, 1).");
        }

        if (AttentionHeads is < 1 or > MaxAttention || AttentionDimHead is < 1 or > MaxAttention)
        {
            throw new ArgumentOutOfRangeException(
                nameof(AttentionHeads), Invariant($"UNetOptions.AttentionHeads and AttentionDimHead must be in [1, {MaxAttention}]; got {AttentionHeads} heads of {AttentionDimHead}."));
        }
    }

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The number of parameters <c>new UNet(options)</c> has, computed without building it (a test pins this against
    /// <see cref="Denoiser.ParameterCount"/>). <see cref="DenoiserOptions.Validate"/> bounds the widths first, so no product overflows.
    /// </summary>
    private static long ParameterCount(UNetOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        long dim = options.Dim, time = dim * 4, hidden = (long)options.AttentionHeads * options.AttentionDimHead;
        long heads = options.AttentionHeads, dimHead = options.AttentionDimHead;
        static long Conv(long input, long output, long kernel, bool bias = true) => (input * output * kernel * kernel) + (bias ? output : 0);
        static long Linear(long input, long output) => (input * output) + output;
        long Resnet(long input, long output) =>
            Linear(time, output * 2) + Conv(input, output, 3) + output + Conv(output, output, 3) + output + (input != output ? Conv(input, output, 1) : 0);
        long LinearAttention(long d) => d + (2 * heads * dimHead * 4) + Conv(d, hidden * 3, 1, bias: false) + Conv(hidden, d, 1) + d;
        long FullAttention(long d) => d + (2 * heads * dimHead * 4) + Conv(d, hidden * 3, 1, bias: false) + Conv(hidden, d, 1);

        long total = Conv(options.Channels, dim, 7) + Linear(dim, time) + Linear(time, time);
        if (options.ClassCount > 0)
        {
            total += (options.ClassCount + 1L) * time;
        }

        var dims = new[] { dim }.Concat(options.DimMults.Select(m => dim * m)).ToArray();
        int levels = dims.Length - 1;
        for (int i = 0; i < levels; i++)
        {
            long dimIn = dims[i], dimOut = dims[i + 1];
            bool last = i == levels - 1;
            total += (2 * Resnet(dimIn, dimIn)) + (last ? FullAttention(dimIn) : LinearAttention(dimIn)) + (last ? Conv(dimIn, dimOut, 3) : Conv(dimIn * 4, dimOut, 1));
            total += (2 * Resnet(dimOut + dimIn, dimOut)) + (last ? FullAttention(dimOut) : LinearAttention(dimOut)) + Conv(dimOut, dimIn, 3);
        }

        long middle = dims[^1];
        total += (2 * Resnet(middle, middle)) + FullAttention(middle);
        total += Resnet(dim * 2, dim) + Conv(dim, options.Channels * (options.LearnedVariance ? 2L : 1L), 1);
        return total;
    }
}
