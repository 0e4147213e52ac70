using System;
using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a deterministic multistep solver of the
/// probability-flow ODE in the data-prediction form. With α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), λ_t = log(α_t/σ_t),
/// h_i = λ_{t_i} − λ_{t_{i−1}} and D_i the prediction x̂₀ at t_i:
/// x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i}(e^{−h_i} − 1) D, where D = D_{i−1} at the first step (and at
/// every step with <see cref="SolverOrder"/> 1, which is DDIM with η = 0) and D = (1 + 1/(2r)) D_{i−1} − (1/(2r)) D_{i−2},
/// r = h_{i−1}/h_i, after it. The last visited timestep is 0, where the result is x̂₀ itself. <see cref="Steps"/> network
/// evaluations in all (20 rival DDIM's 50; Lu et al. report 10–20).
/// </summary>
/// <remarks>The previous x̂₀ lives in the instance: step a <see cref="DiffusionScheduler.Clone"/> per chunk of images.</remarks>
public sealed class DpmSolverScheduler : DiffusionScheduler
{
    /// <summary>The registered name, "dpm-solver++".</summary>
    public const string RegisteredName = "dpm-solver++";

    private int steps = 20;
    private int solverOrder = 2;
    private TimestepSpacing spacing = TimestepSpacing.Uniform;
    private Tensor? previous;
    private double previousStep;

    /// <inheritdoc/>
    public override string Name => RegisteredName;

    /// <summary>Gets or sets the number of network evaluations (2 ≤ steps ≤ T). Default 20.</summary>
    public int Steps
    {
        get => steps;
        set => steps = value >= 2 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "DPM-Solver++ needs at least two steps.");
    }

    /// <summary>Gets or sets the solver's order: 2 (DPM-Solver++(2M), default) or 1 (the first-order update at every step).</summary>
    public int SolverOrder
    {
        get => solverOrder;
        set => solverOrder = value is 1 or 2 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "DPM-Solver++'s order must be 1 or 2.");
    }

    /// <summary>Gets or sets how the timesteps are spaced. Default <see cref="TimestepSpacing.Uniform"/>.</summary>
    public TimestepSpacing Spacing
    {
        get => spacing;
        set => spacing = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "Unknown timestep spacing.");
    }

    /// <summary>
    /// Gets or sets a value indicating whether the last update (into t = 0, where λ jumps: σ₀ is tiny) uses the
    /// first-order formula; the second-order extrapolation over a step much longer than the one before it is unstable
    /// (measured against the exact ODE solution in the tests). Default true.
    /// </summary>
    public bool LowerOrderFinal { get; set; } = true;

    /// <inheritdoc/>
    public override bool UsesStepNoise => false;

    /// <inheritdoc/>
    protected override IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule) => SpacedTimesteps(schedule, steps, spacing);

    /// <inheritdoc/>
    protected override Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise)
    {
        var current = modelOutput.PredictedStart;
        if (next < 0)
        {
            return current.alias();
        }

        var alphaBar = Schedule.AlphasCumprod;
        double alpha = Math.Sqrt(alphaBar[timestep]), sigma = Math.Sqrt(1 - alphaBar[timestep]);
        double alphaNext = Math.Sqrt(alphaBar[next]), sigmaNext = Math.Sqrt(1 - alphaBar[next]);
        double h = Math.Log(alphaNext / sigmaNext) - Math.Log(alpha / sigma);
        bool firstOrder = solverOrder == 1 || previous is null || (LowerOrderFinal && next == 0);
        Tensor data = current;
        if (!firstOrder)
        {
            double r = previousStep / h;
            using Scalar currentWeight = (1 + (1 / (2 * r))).ToScalar(), previousWeight = (1 / (2 * r)).ToScalar();
            data = (currentWeight * current) - (previousWeight * previous!);
        }

        using Scalar sampleWeight = (sigmaNext / sigma).ToScalar(), dataWeight = (alphaNext * (Math.Exp(-h) - 1)).ToScalar();
        var result = (sampleWeight * sample) - (dataWeight * data);
        Remember(current, h);
        return result;
    }

    /// <inheritdoc/>
    protected override void ResetState()
    {
        previous?.Dispose();
        previous = null;
        previousStep = 0;
    }

    /// <inheritdoc/>
    protected override void ForgetSharedState()
    {
        previous = null;
        previousStep = 0;
    }

    private void Remember(Tensor predictedStart, double step)
    {
        previous?.Dispose();
        previous = predictedStart.detach().clone().DetachFromDisposeScope();
        previousStep = step;
    }
}
