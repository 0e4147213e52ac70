using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Serialization;
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
    private TimestepSpacing spacing;
    private int stepsOffset;

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

    /// <summary>
    /// Gets or sets how the timesteps are spaced: <see cref="TimestepSpacing.Uniform"/> (the default), or diffusers'
    /// <see cref="TimestepSpacing.Leading"/> or <see cref="TimestepSpacing.Trailing"/> (its DDIMScheduler's
    /// <c>timestep_spacing</c>, for imported pipelines). Not written to model files when it is the default.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public TimestepSpacing Spacing
    {
        get => spacing;
        set => spacing = value is TimestepSpacing.Uniform or TimestepSpacing.Leading or TimestepSpacing.Trailing
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "DDIM spaces its timesteps Uniform, Leading or Trailing.");
    }

    /// <summary>
    /// Gets or sets the offset added to every timestep of <see cref="TimestepSpacing.Leading"/> spacing (diffusers'
    /// <c>steps_offset</c>), in [0, T). Default 0; not written to model files when it is 0.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int StepsOffset
    {
        get => stepsOffset;
        set => stepsOffset = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "The steps offset must not be negative.");
    }

    /// <summary>
    /// The visited timesteps, decreasing: with <see cref="TimestepSpacing.Uniform"/> round(i·(T − 1)/(S − 1)) for
    /// i = S − 1 … 0, so T − 1 and 0 are always included; with diffusers' spacings as <see cref="TimestepSpacing"/> says.
    /// </summary>
    /// <param name="schedule">The model's schedule.</param>
    /// <returns>The decreasing sequence.</returns>
    protected override IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule)
    {
        var sequence = SpacedTimesteps(schedule, steps, spacing);
        if (spacing != TimestepSpacing.Leading || stepsOffset == 0)
        {
            return sequence;
        }

        var shifted = sequence.Select(t => t + stepsOffset).ToArray();
        return shifted[0] < schedule.Timesteps
            ? shifted
            : throw new ArgumentOutOfRangeException(nameof(schedule), $"DDIM's steps offset {stepsOffset} moves its first timestep to {shifted[0]}, beyond the model's T = {schedule.Timesteps}.");
    }

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
