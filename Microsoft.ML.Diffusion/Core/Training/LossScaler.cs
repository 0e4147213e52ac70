using System;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>
/// Dynamic loss scaling for half-precision training (Micikevicius et al. 2018, "Mixed Precision Training"; the rules of
/// torch's <c>GradScaler</c>): the loss is multiplied by <see cref="Scale"/> before the backward pass so that small
/// gradients do not underflow half precision's range, and the gradients are divided by it again (before clipping) in
/// float32. A step whose gradients overflowed (an inf or NaN) is skipped and the scale multiplied by
/// <see cref="BackoffFactor"/>; after <see cref="GrowthInterval"/> good steps in a row it is multiplied by
/// <see cref="GrowthFactor"/>.
/// </summary>
/// <remarks>
/// The state — the scale and the count of good steps since it last changed — is saved in training checkpoints, so a
/// resumed run scales exactly as the uninterrupted one. Scales are powers of two with the default factors, so scaling and
/// unscaling are exact in binary floating point.
/// </remarks>
public sealed class LossScaler
{
    /// <summary>The default initial scale, 2¹⁶ (torch's <c>GradScaler</c>).</summary>
    public const double DefaultInitialScale = 65536;

    /// <summary>The default number of good steps after which the scale grows, 2000 (torch's <c>GradScaler</c>).</summary>
    public const int DefaultGrowthInterval = 2000;

    /// <summary>Initializes a new instance of the <see cref="LossScaler"/> class.</summary>
    /// <param name="initialScale">The first scale; positive and finite. Default 2¹⁶.</param>
    /// <param name="growthInterval">Good steps in a row after which the scale grows; positive. Default 2000.</param>
    /// <param name="growthFactor">What the scale is multiplied by when it grows; above 1. Default 2.</param>
    /// <param name="backoffFactor">What the scale is multiplied by after an overflow; in (0, 1). Default 0.5.</param>
    public LossScaler(double initialScale = DefaultInitialScale, int growthInterval = DefaultGrowthInterval, double growthFactor = 2, double backoffFactor = 0.5)
    {
        Check(initialScale, growthInterval, growthFactor, backoffFactor);
        InitialScale = Scale = initialScale;
        GrowthInterval = growthInterval;
        GrowthFactor = growthFactor;
        BackoffFactor = backoffFactor;
    }

    /// <summary>Gets the scale the run started with.</summary>
    public double InitialScale { get; }

    /// <summary>Gets the number of good steps in a row after which the scale grows.</summary>
    public int GrowthInterval { get; }

    /// <summary>Gets the factor of growth.</summary>
    public double GrowthFactor { get; }

    /// <summary>Gets the factor applied after an overflow.</summary>
    public double BackoffFactor { get; }

    /// <summary>Gets the current scale of the loss.</summary>
    public double Scale { get; private set; }

    /// <summary>Gets the number of good steps since the scale last changed (torch's growth tracker).</summary>
    public int GoodSteps { get; private set; }

    /// <summary>Gets the number of steps skipped because their gradients overflowed.</summary>
    public long Overflows { get; private set; }

    /// <summary>
    /// Records the outcome of a step: after an overflow the scale backs off and the count of good steps restarts; after a
    /// good step the count grows, and at <see cref="GrowthInterval"/> the scale grows (unless that would overflow a float32,
    /// as torch keeps its scale) and the count restarts.
    /// </summary>
    /// <param name="finite">Whether the step's gradients were all finite (the step is applied only then).</param>
    public void Update(bool finite)
    {
        if (!finite)
        {
            Scale *= BackoffFactor;
            GoodSteps = 0;
            Overflows++;
            return;
        }

        if (++GoodSteps >= GrowthInterval)
        {
            double grown = Scale * GrowthFactor;
            Scale = grown <= float.MaxValue ? grown : Scale;
            GoodSteps = 0;
        }
    }

    /// <summary>Restores a saved state (a checkpoint's).</summary>
    /// <param name="scale">The scale.</param>
    /// <param name="goodSteps">The good steps since the scale last changed.</param>
    /// <param name="overflows">The overflows so far.</param>
    internal void Restore(double scale, int goodSteps, long overflows)
    {
        Scale = scale;
        GoodSteps = goodSteps;
        Overflows = overflows;
    }

    /// <summary>Throws for settings torch's <c>GradScaler</c> would not accept.</summary>
    internal static void Check(double initialScale, int growthInterval, double growthFactor, double backoffFactor)
    {
        if (!(initialScale > 0 && double.IsFinite(initialScale) && initialScale <= float.MaxValue))
        {
            throw new ArgumentOutOfRangeException(nameof(initialScale), initialScale, "The initial loss scale must be positive and finite in float32.");
        }

        if (growthInterval < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(growthInterval), growthInterval, "The loss scale's growth interval must be at least 1 step.");
        }

        if (!(growthFactor > 1 && double.IsFinite(growthFactor)))
        {
            throw new ArgumentOutOfRangeException(nameof(growthFactor), growthFactor, "The loss scale's growth factor must be above 1.");
        }

        if (backoffFactor is not (> 0 and < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(backoffFactor), backoffFactor, "The loss scale's backoff factor must be in (0, 1).");
        }
    }
}
