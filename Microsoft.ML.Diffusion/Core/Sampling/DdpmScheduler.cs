using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Ancestral sampling (Ho et al. 2020, Algorithm 2): x_{t−1} = μ_θ(x_t, t) + σ_t z, z ~ N(0, I) (no noise at the last step),
/// through all T steps, with the model's variance type.
/// </summary>
public sealed class DdpmScheduler : DiffusionScheduler
{
    /// <summary>The registered name, "ddpm".</summary>
    public const string RegisteredName = "ddpm";

    /// <inheritdoc/>
    public override string Name => RegisteredName;

    /// <inheritdoc/>
    protected override IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        return Enumerable.Range(0, schedule.Timesteps).Reverse().ToArray();
    }

    /// <inheritdoc/>
    protected override Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise)
    {
        if (timestep == 0)
        {
            return modelOutput.Mean.alias();
        }

        return modelOutput.Mean.Plus((Scalars.Half * modelOutput.LogVariance).exp() * noise!);
    }
}
