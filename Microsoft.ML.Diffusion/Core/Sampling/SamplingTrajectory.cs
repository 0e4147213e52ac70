using System;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Intermediate states of a sampling run, for progressive-denoising pictures: x_t and the prediction x̂₀ every
/// <see cref="Every"/>-th step, starting with the pure noise x_T and ending with the final image. Tensors are on the CPU.
/// </summary>
public sealed class SamplingTrajectory : IDisposable
{
    private readonly List<int> timesteps = new();
    private readonly List<Tensor> states = new();
    private readonly List<Tensor> predictedStarts = new();

    /// <summary>Initializes a new instance of the <see cref="SamplingTrajectory"/> class.</summary>
    /// <param name="every">Capture every k-th step (k ≥ 1).</param>
    public SamplingTrajectory(int every = 1)
    {
        if (every < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(every), every, "Capture interval must be at least 1.");
        }

        Every = every;
    }

    /// <summary>Gets the capture interval in steps.</summary>
    public int Every { get; }

    /// <summary>Gets the timestep of each capture (−1 for the final image).</summary>
    public IReadOnlyList<int> Timesteps => timesteps;

    /// <summary>Gets x_t at each capture, N×C×H×W.</summary>
    public IReadOnlyList<Tensor> States => states;

    /// <summary>Gets x̂₀ at each capture (the final image itself at the last capture), N×C×H×W.</summary>
    public IReadOnlyList<Tensor> PredictedStarts => predictedStarts;

    /// <summary>Disposes every captured tensor.</summary>
    public void Dispose()
    {
        foreach (var t in states)
        {
            t.Dispose();
        }

        foreach (var t in predictedStarts)
        {
            t.Dispose();
        }

        states.Clear();
        predictedStarts.Clear();
        timesteps.Clear();
    }

    internal void Add(int timestep, Tensor state, Tensor predictedStart)
    {
        timesteps.Add(timestep);
        states.Add(state.detach().cpu().clone().DetachFromDisposeScope());
        predictedStarts.Add(predictedStart.detach().cpu().clone().DetachFromDisposeScope());
    }
}
