using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Diffusion;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>Draws images from a trained <see cref="GaussianDiffusion"/> by running a reverse process from pure noise.</summary>
public interface IDiffusionScheduler
{
    /// <summary>Generates one image per seed. Each image depends only on its own seed (and label), never on the batch.</summary>
    /// <param name="diffusion">The model.</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="classes">Labels, one per image, for a class-conditional model; null otherwise.</param>
    /// <param name="trajectory">When not null, receives the intermediate states.</param>
    /// <returns>Images N×C×H×W in [−1, 1], on the model's device.</returns>
    Tensor Sample(GaussianDiffusion diffusion, IReadOnlyList<long> seeds, Tensor? classes = null, SamplingTrajectory? trajectory = null);
}
