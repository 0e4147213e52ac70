using System;
using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a deterministic second-order multistep solver of the
/// probability-flow ODE in the data-prediction form. With α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), λ_t = log(α_t/σ_t),
/// h_i = λ_{t_i} − λ_{t_{i−1}} and D_i the prediction x̂₀ at t_i:
/// x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i}(e^{−h_i} − 1) D, where D = D_{i−1} at the first step and
/// D = (1 + 1/(2r)) D_{i−1} − (1/(2r)) D_{i−2}, r = h_{i−1}/h_i, after it. The last visited timestep is 0, where the
/// result is x̂₀ itself. <see cref="Steps"/> network evaluations in all (20 rival DDIM's 50; Lu et al. report 10–20).
/// </summary>
public sealed class DpmSolverScheduler : TimestepScheduler
{
    private int steps = 20;

    /// <summary>Gets or sets the number of network evaluations (2 ≤ steps ≤ T). Default 20.</summary>
    public int Steps
    {
        get => steps;
        set => steps = value >= 2 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "DPM-Solver++ needs at least two steps.");
    }

    /// <summary>Gets or sets how the timesteps are spaced. Default <see cref="TimestepSpacing.Uniform"/>.</summary>
    public TimestepSpacing Spacing { get; set; } = TimestepSpacing.Uniform;

    /// <summary>
    /// Gets or sets a value indicating whether the last update (into t = 0, where λ jumps: σ₀ is tiny) uses the
    /// first-order formula; the second-order extrapolation over a step much longer than the one before it is unstable
    /// (measured against the exact ODE solution in the tests). Default true.
    /// </summary>
    public bool LowerOrderFinal { get; set; } = true;

    /// <inheritdoc/>
    protected override bool UsesStepNoise => false;

    /// <inheritdoc/>
    protected override IReadOnlyList<int> Timesteps(NoiseSchedule schedule) => Visit(schedule, steps, Spacing, "DPM-Solver++");

    /// <inheritdoc/>
    protected override IDisposable? CreateChunkState() => new History();

    /// <inheritdoc/>
    protected override Tensor Step(GaussianDiffusion diffusion, Tensor x, int t, int next, DiffusionPrediction prediction, Tensor? noise, IDisposable? state)
    {
        ArgumentNullException.ThrowIfNull(diffusion);
        ArgumentNullException.ThrowIfNull(prediction);
        var history = (History)state!;
        var current = prediction.PredictedStart;
        if (next < 0)
        {
            return current.alias();
        }

        var alphaBar = diffusion.Schedule.AlphasCumprod;
        double alpha = Math.Sqrt(alphaBar[t]), sigma = Math.Sqrt(1 - alphaBar[t]);
        double alphaNext = Math.Sqrt(alphaBar[next]), sigmaNext = Math.Sqrt(1 - alphaBar[next]);
        double h = Math.Log(alphaNext / sigmaNext) - Math.Log(alpha / sigma);
        bool firstOrder = history.Previous is null || (LowerOrderFinal && next == 0);
        Tensor data = current;
        if (!firstOrder)
        {
            double r = history.PreviousStep / h;
            data = ((1 + (1 / (2 * r))) * current) - ((1 / (2 * r)) * history.Previous!);
        }

        var result = (sigmaNext / sigma * x) - (alphaNext * (Math.Exp(-h) - 1) * data);
        history.Remember(current, h);
        return result;
    }

    /// <summary>The visited timesteps of a few-step sampler, decreasing, for the given spacing.</summary>
    internal static IReadOnlyList<int> Visit(NoiseSchedule schedule, int steps, TimestepSpacing spacing, string name)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        if (steps > schedule.Timesteps)
        {
            throw new ArgumentOutOfRangeException(nameof(schedule), $"{name} with {steps} steps needs at least as many diffusion timesteps; the model has {schedule.Timesteps}.");
        }

        var sequence = spacing switch
        {
            TimestepSpacing.Uniform => NoiseSchedule.EvenlySpacedTimesteps(schedule.Timesteps, steps),
            TimestepSpacing.Karras => schedule.KarrasTimesteps(steps),
            _ => throw new ArgumentOutOfRangeException(nameof(spacing), spacing, "Unknown timestep spacing."),
        };
        Array.Reverse(sequence);
        return sequence;
    }

    /// <summary>The previous prediction x̂₀ of one chunk of images and the step h that followed it.</summary>
    private sealed class History : IDisposable
    {
        public Tensor? Previous { get; private set; }

        public double PreviousStep { get; private set; }

        public void Remember(Tensor predictedStart, double step)
        {
            Previous?.Dispose();
            Previous = predictedStart.detach().clone().DetachFromDisposeScope();
            PreviousStep = step;
        }

        public void Dispose() => Previous?.Dispose();
    }
}
