using System;
using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// DDIM (Song et al. 2021, eq. 12) over <see cref="Steps"/> evenly spaced timesteps from T − 1 down to 0:
/// x_{τ'} = √ᾱ_{τ'} x̂₀ + √(1 − ᾱ_{τ'} − σ²) ε̂ + σ z with σ = η √((1 − ᾱ_{τ'})/(1 − ᾱ_τ)) √(1 − ᾱ_τ/ᾱ_{τ'}).
/// η = 0 is deterministic; η = 1 with all T steps is ancestral sampling with the posterior variance.
/// </summary>
public sealed class DdimScheduler : DiffusionScheduler
{
    /// <summary>The registered name, "ddim".</summary>
    public const string RegisteredName = "ddim";

    private int steps = 50;
    private double eta;

    /// <summary>Gets or sets the number of denoising steps (1 ≤ steps ≤ T). Default 50.</summary>
    public int Steps
    {
        get => steps;
        set => steps = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "DDIM needs at least one step.");
    }

    /// <inheritdoc/>
    public override string Name => RegisteredName;

    /// <summary>Gets or sets η ∈ [0, 1], the amount of fresh noise per step. Default 0.</summary>
    public double Eta
    {
        get => eta;
        set => eta = value is >= 0 and <= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "η must be in [0, 1].");
    }

    /// <summary>The visited timesteps: round(i·(T − 1)/(S − 1)) for i = S − 1 … 0, so T − 1 and 0 are always included.</summary>
    /// <param name="schedule">The model's schedule.</param>
    /// <returns>The decreasing sequence.</returns>
    protected override IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule) => SpacedTimesteps(schedule, steps, TimestepSpacing.Uniform);

    /// <inheritdoc/>
    public override bool UsesStepNoise => eta > 0;

    /// <inheritdoc/>
    protected override Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise)
    {
        if (next < 0)
        {
            return modelOutput.PredictedStart.alias();
        }

        var alphaBar = Schedule.AlphasCumprod;
        double a = alphaBar[timestep];
        double aNext = alphaBar[next];
        double sigma = eta * Math.Sqrt((1 - aNext) / (1 - a)) * Math.Sqrt(1 - (a / aNext));
        double c = Math.Sqrt(Math.Max(0.0, 1 - aNext - (sigma * sigma)));
        using Scalar startWeight = Math.Sqrt(aNext).ToScalar(), noiseWeight = c.ToScalar(), fresh = sigma.ToScalar();
        var result = (startWeight * modelOutput.PredictedStart).Plus(noiseWeight * modelOutput.PredictedNoise);
        return sigma > 0 ? result.Plus(fresh * noise!) : result;
    }
}
