using System;
using System.Globalization;
using System.Linq;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Shape of the <see cref="DiT"/> noise predictor (Peebles &amp; Xie 2023). The paper's configurations are, for example,
/// DiT-S/2 (hidden size 384, depth 12, 6 heads, patch 2) and DiT-B/4 (768, 12, 12, patch 4), all with an MLP ratio of 4.
/// </summary>
public sealed class DiTOptions : DenoiserOptions
{
    /// <summary>The kind's name in model files.</summary>
    public const string KindName = "DiT";

    // Limits far above any model trained on one machine, low enough that no parameter count overflows.
    private const int MaxPatchSize = 8192;
    private const int MaxWidth = 16_384;
    private const int MaxHeads = 4096;
    private const int MaxDepth = 1024;
    private const double MaxMlpRatio = 64;

    /// <inheritdoc/>
    public override string Kind => KindName;

    /// <summary>Gets or sets the side of the square patches the image is cut into (one token per patch). Default 2.</summary>
    public int PatchSize { get; set; } = 2;

    /// <summary>
    /// Gets or sets the token width. It must be divisible by 4 (the 2-D sine-cosine position embedding gives each axis half
    /// the width, half of that sines and half cosines) and by <see cref="Heads"/>. Default 128.
    /// </summary>
    public int HiddenSize { get; set; } = 128;

    /// <summary>Gets or sets the number of transformer blocks. Default 6.</summary>
    public int Depth { get; set; } = 6;

    /// <summary>Gets or sets the number of attention heads; each head is <see cref="HiddenSize"/> / <see cref="Heads"/> wide. Default 4.</summary>
    public int Heads { get; set; } = 4;

    /// <summary>Gets or sets the width of each block's MLP relative to <see cref="HiddenSize"/> (truncated to an integer). Default 4.</summary>
    public double MlpRatio { get; set; } = 4;

    /// <summary>Gets the factor every image side must divide by: the patch size.</summary>
    public override int SizeDivisor => PatchSize;

    /// <summary>Gets the width of each block's MLP: ⌊<see cref="HiddenSize"/> · <see cref="MlpRatio"/>⌋.</summary>
    public int MlpHiddenSize => (int)(HiddenSize * MlpRatio);

    /// <inheritdoc/>
    public override Denoiser CreateDenoiser() => new DiT(this);

    /// <inheritdoc/>
    public override long? CountParameters() => ParameterCount(this);

    /// <summary>Returns a copy.</summary>
    /// <returns>The copy.</returns>
    public override DiTOptions Clone() => new()
    {
        PatchSize = PatchSize,
        HiddenSize = HiddenSize,
        Depth = Depth,
        Heads = Heads,
        MlpRatio = MlpRatio,
        Channels = Channels,
        LearnedVariance = LearnedVariance,
        ClassCount = ClassCount,
    };

    /// <inheritdoc/>
    public override string DescribeSizeDivisor() => "the patch size; resize the images or use a smaller patch";

    /// <summary>
    /// Throws a clear exception for an invalid shape: <see cref="PatchSize"/> in [1, 8192]; <see cref="HiddenSize"/> a
    /// multiple of 4 in [4, 16384], divisible by <see cref="Heads"/> (at most 4096); <see cref="Depth"/> in [1, 1024];
    /// <see cref="MlpRatio"/> in (0, 64] with an MLP at least 1 wide.
    /// </summary>
    protected override void ValidateShape()
    {
        if (PatchSize is < 1 or > MaxPatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(PatchSize), PatchSize, Invariant($"DiTOptions.PatchSize must be positive and at most {MaxPatchSize}."));
        }

        if (HiddenSize < 4 || HiddenSize % 4 != 0 || HiddenSize > MaxWidth)
        {
            throw new ArgumentOutOfRangeException(
                nameof(HiddenSize),
                HiddenSize,
                Invariant($"DiTOptions.HiddenSize must be a multiple of 4 in [4, {MaxWidth}] (the 2-D sine-cosine position embedding gives each axis half the width, half sines and half cosines)."));
        }

        if (Heads is < 1 or > MaxHeads || HiddenSize % Heads != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Heads), Heads, Invariant($"DiTOptions.Heads must be in [1, {MaxHeads}] and divide HiddenSize ({HiddenSize})."));
        }

        if (Depth is < 1 or > MaxDepth)
        {
            throw new ArgumentOutOfRangeException(nameof(Depth), Depth, Invariant($"DiTOptions.Depth must be at least 1 and at most {MaxDepth}."));
        }

        if (!double.IsFinite(MlpRatio) || MlpRatio <= 0 || MlpRatio > MaxMlpRatio || MlpHiddenSize < 1)
        {
            throw new ArgumentOutOfRangeException(
                nameof(MlpRatio), MlpRatio, Invariant($"DiTOptions.MlpRatio must be positive and at most {MaxMlpRatio}, with HiddenSize · MlpRatio at least 1; got {HiddenSize} · {MlpRatio}."));
        }
    }

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The number of parameters <c>new DiT(options)</c> has, computed without building it (a test pins it against
    /// <see cref="Denoiser.ParameterCount"/>).
    /// </summary>
    private static long ParameterCount(DiTOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        long d = options.HiddenSize, m = options.MlpHiddenSize, p2 = (long)options.PatchSize * options.PatchSize, c = options.Channels;
        long outputs = c * (options.LearnedVariance ? 2 : 1);
        long total = (c * p2 * d) + d;                                    // patch embedding
        total += (DiT.TimeFrequencySize * d) + d + (d * d) + d; // time MLP
        total += options.ClassCount > 0 ? (options.ClassCount + 1L) * d : 0;
        total += options.Depth * ((10 * d * d) + (2 * d * m) + (11 * d) + m);
        total += (2 * d * d) + (2 * d) + (d * p2 * outputs) + (p2 * outputs);
        return total;
    }
}
