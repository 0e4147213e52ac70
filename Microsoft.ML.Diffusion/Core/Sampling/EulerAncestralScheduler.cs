using System;
using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Euler-ancestral sampling (Karras et al. 2022's Euler step with ancestral noise, as k-diffusion's
/// <c>sample_euler_ancestral</c>), in the variance-exploding view x̃ = x_t/√ᾱ_t = x₀ + σ_t ε with σ_t = √((1 − ᾱ_t)/ᾱ_t):
/// from σ to σ', σ↑ = min(σ', η·√(σ'²(σ² − σ'²)/σ²)), σ↓ = √(σ'² − σ↑²), x̃' = x̃ + (σ↓ − σ)(x̃ − x̂₀)/σ + σ↑ z.
/// The last visited timestep is 0, where the result is x̂₀ itself.
/// </summary>
public sealed class EulerAncestralScheduler : DiffusionScheduler
{
    /// <summary>The registered name, "euler-a".</summary>
    public const string RegisteredName = "euler-a";

    private int steps = 20;
    private TimestepSpacing spacing = TimestepSpacing.Uniform;
    private double eta = 1.0;

    /// <inheritdoc/>
    public override string Name => RegisteredName;

    /// <summary>Gets or sets the number of network evaluations (2 ≤ steps ≤ T). Default 20.</summary>
    public int Steps
    {
        get => steps;
        set => steps = value >= 2 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "Euler-ancestral needs at least two steps.");
    }

    /// <summary>Gets or sets η ∈ [0, 1], the scale of the ancestral noise (0 = the deterministic Euler method). Default 1.</summary>
    public double Eta
    {
        get => eta;
        set => eta = value is >= 0 and <= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "η must be in [0, 1].");
    }

    /// <summary>Gets or sets how the timesteps are spaced. Default <see cref="TimestepSpacing.Uniform"/>.</summary>
    public TimestepSpacing Spacing
    {
        get => spacing;
        set => spacing = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "Unknown timestep spacing.");
    }

    /// <inheritdoc/>
    public override bool UsesStepNoise => eta > 0;

    /// <inheritdoc/>
    protected override IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule) => SpacedTimesteps(schedule, steps, spacing);

    /// <inheritdoc/>
    protected override Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise)
    {
        if (next < 0)
        {
            return modelOutput.PredictedStart.alias();
        }

        var alphaBar = Schedule.AlphasCumprod;
        double sigma = Math.Sqrt((1 - alphaBar[timestep]) / alphaBar[timestep]);
        double sigmaNext = Math.Sqrt((1 - alphaBar[next]) / alphaBar[next]);
        double up = Math.Min(sigmaNext, eta * Math.Sqrt(sigmaNext * sigmaNext * ((sigma * sigma) - (sigmaNext * sigmaNext)) / (sigma * sigma)));
        double down = Math.Sqrt((sigmaNext * sigmaNext) - (up * up));
        using Scalar toSigma = Math.Sqrt(alphaBar[timestep]).ToScalar(), sigmaScalar = sigma.ToScalar(), move = (down - sigma).ToScalar();
        using Scalar fresh = up.ToScalar(), fromSigma = Math.Sqrt(alphaBar[next]).ToScalar();
        var scaled = sample / toSigma;
        var direction = (scaled - modelOutput.PredictedStart) / sigmaScalar;
        var moved = scaled.Plus(move * direction);
        if (up > 0)
        {
            moved = moved.Plus(fresh * noise!);
        }

        return moved * fromSigma;
    }
}
