using System;
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

    /// <summary>Throws a clear exception for an invalid combination.</summary>
    public override void Validate()
    {
        if (PatchSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(PatchSize), PatchSize, "DiTOptions.PatchSize must be positive.");
        }

        if (HiddenSize < 4 || HiddenSize % 4 != 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(HiddenSize),
                HiddenSize,
                "DiTOptions.HiddenSize must be a positive multiple of 4 (the 2-D sine-cosine position embedding gives each axis half the width, half sines and half cosines).");
        }

        if (Heads < 1 || HiddenSize % Heads != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Heads), Heads, $"DiTOptions.Heads must be positive and divide HiddenSize ({HiddenSize}).");
        }

        if (Depth < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Depth), Depth, "DiTOptions.Depth must be at least 1.");
        }

        if (!double.IsFinite(MlpRatio) || MlpRatio <= 0 || HiddenSize * MlpRatio >= int.MaxValue || MlpHiddenSize < 1)
        {
            throw new ArgumentOutOfRangeException(
                nameof(MlpRatio), MlpRatio, $"DiTOptions.MlpRatio must be positive and finite, with HiddenSize · MlpRatio at least 1; got {HiddenSize} · {MlpRatio}.");
        }

        if (Channels < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Channels), Channels, "DiTOptions.Channels must be positive.");
        }

        if (ClassCount < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(ClassCount), ClassCount, "DiTOptions.ClassCount must be 0 (unconditional) or positive.");
        }
    }

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
