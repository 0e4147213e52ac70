using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Ancestral sampling (Ho et al. 2020, Algorithm 2): x_{t−1} = μ_θ(x_t, t) + σ_t z, z ~ N(0, I) (no noise at the last step),
/// through all T steps, with the model's variance type.
/// </summary>
public sealed class DdpmScheduler : TimestepScheduler
{
    /// <inheritdoc/>
    protected override IReadOnlyList<int> Timesteps(NoiseSchedule schedule) => Enumerable.Range(0, schedule.Timesteps).Reverse().ToArray();

    /// <inheritdoc/>
    protected override Tensor Step(GaussianDiffusion diffusion, Tensor x, int t, int next, DiffusionPrediction prediction, Tensor? noise, IDisposable? state)
    {
        if (t == 0)
        {
            return prediction.Mean.alias();
        }

        return prediction.Mean + ((0.5 * prediction.LogVariance).exp() * noise!);
    }
}
