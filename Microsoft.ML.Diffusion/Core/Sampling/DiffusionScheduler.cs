using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Schedules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// A reverse-process algorithm, and nothing else (as a diffusers scheduler): <see cref="SetTimesteps"/> chooses the
/// timesteps to visit for a noise schedule, <see cref="Step"/> turns p_θ's prediction at x_t into the next state. Seeds,
/// chunks, guidance, clipping, edits and trajectories are the <see cref="SamplingLoop"/>'s. A scheduler's settings are its
/// own public properties; with its <see cref="Name"/> they are what <see cref="SchedulerRegistry"/> writes to JSON (model
/// files) and reads back. A new scheduler is one class and one <see cref="SchedulerRegistry.Register{TScheduler}"/> line.
/// </summary>
/// <remarks>
/// A multistep scheduler keeps its earlier predictions in the instance (as diffusers does). The loop never steps the
/// instance it is given: it steps one <see cref="Clone"/> per chunk of images and disposes it, so one configured scheduler
/// can serve concurrent generations and every chunk has its own history.
/// <para>
/// In <see cref="Step"/>, hold every TorchSharp <c>Scalar</c> until libtorch has used it (<c>using Scalar c = value.ToScalar();
/// x * c</c>) rather than writing <c>x * value</c>: TorchSharp frees a temporary scalar from the finalizer thread, which
/// can happen during the native call when other threads allocate (docs/native-lifetimes.md).
/// </para>
/// </remarks>
[JsonConverter(typeof(DiffusionSchedulerJsonConverter))]
public abstract class DiffusionScheduler : IDisposable
{
    private IReadOnlyList<int>? timesteps;
    private NoiseSchedule? schedule;
    private int cursor;

    /// <summary>Gets the name the scheduler is registered and stored under (for example "ddim").</summary>
    [JsonIgnore]
    public abstract string Name { get; }

    /// <summary>
    /// Gets a value indicating whether <see cref="Step"/> uses its noise argument. When false, the loop draws no noise
    /// after x_T and passes null. Default true.
    /// </summary>
    [JsonIgnore]
    public virtual bool UsesStepNoise => true;

    /// <summary>Gets the decreasing timesteps chosen by <see cref="SetTimesteps"/>.</summary>
    /// <exception cref="InvalidOperationException">When <see cref="SetTimesteps"/> has not been called.</exception>
    [JsonIgnore]
    public IReadOnlyList<int> Timesteps => timesteps ?? throw new InvalidOperationException($"Call {nameof(SetTimesteps)} before stepping the {Name} scheduler.");

    /// <summary>Gets the noise schedule given to <see cref="SetTimesteps"/>.</summary>
    /// <exception cref="InvalidOperationException">When <see cref="SetTimesteps"/> has not been called.</exception>
    protected NoiseSchedule Schedule => schedule ?? throw new InvalidOperationException($"Call {nameof(SetTimesteps)} before stepping the {Name} scheduler.");

    /// <summary>Chooses the timesteps for a model's noise schedule and forgets any earlier steps.</summary>
    /// <param name="schedule">The model's noise schedule (T = its length).</param>
    public void SetTimesteps(NoiseSchedule schedule)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        var chosen = SelectTimesteps(schedule);
        if (chosen.Count == 0)
        {
            throw new InvalidOperationException($"The {Name} scheduler chose no timesteps.");
        }

        ResetState();
        this.schedule = schedule;
        timesteps = chosen;
        cursor = 0;
    }

    /// <summary>
    /// One reverse step from x_t (<paramref name="sample"/> at <paramref name="timestep"/>) to the state at the next of
    /// <see cref="Timesteps"/> (to x₀ after the last).
    /// </summary>
    /// <param name="modelOutput">p_θ at (x_t, t): x̂₀, ε̂, the posterior mean and log-variance (<see cref="GaussianDiffusion.PMeanVariance"/>).</param>
    /// <param name="timestep">t, one of <see cref="Timesteps"/>.</param>
    /// <param name="sample">x_t.</param>
    /// <param name="noise">Fresh standard normal noise of the shape of x_t, or null when <see cref="UsesStepNoise"/> is false.</param>
    /// <returns>The next state.</returns>
    public Tensor Step(DiffusionPrediction modelOutput, int timestep, Tensor sample, Tensor? noise)
    {
        ArgumentNullException.ThrowIfNull(modelOutput);
        ArgumentNullException.ThrowIfNull(sample);
        if (UsesStepNoise && noise is null)
        {
            throw new ArgumentNullException(nameof(noise), $"The {Name} scheduler needs fresh noise at every step.");
        }

        return StepTo(modelOutput, timestep, NextTimestep(timestep), sample, noise);
    }

    /// <summary>The timestep that follows <paramref name="timestep"/> in <see cref="Timesteps"/>, or −1 after the last.</summary>
    /// <param name="timestep">One of <see cref="Timesteps"/>.</param>
    /// <returns>The next timestep, or −1.</returns>
    public int NextTimestep(int timestep)
    {
        // Steps usually come in order: look from where the last one was found, then everywhere.
        var visited = Timesteps;
        for (int k = 0; k < visited.Count; k++)
        {
            int i = (cursor + k) % visited.Count;
            if (visited[i] == timestep)
            {
                cursor = i;
                return i + 1 < visited.Count ? visited[i + 1] : -1;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(timestep), timestep, $"The {Name} scheduler does not visit timestep {timestep}.");
    }

    /// <summary>
    /// Returns a scheduler with the same settings and no state (no timesteps, no history); the copy must be disposed.
    /// </summary>
    /// <returns>The copy.</returns>
    public DiffusionScheduler Clone()
    {
        var copy = (DiffusionScheduler)MemberwiseClone();
        copy.timesteps = null;
        copy.schedule = null;
        copy.ForgetSharedState();
        return copy;
    }

    /// <summary>Releases the state a multistep scheduler keeps.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Chooses the decreasing timesteps to visit, from at most T − 1 down to 0.</summary>
    /// <param name="schedule">The model's noise schedule.</param>
    /// <returns>The sequence.</returns>
    protected abstract IReadOnlyList<int> SelectTimesteps(NoiseSchedule schedule);

    /// <summary>One reverse step from x_t to x_next (next = −1 means to x₀).</summary>
    /// <param name="modelOutput">p_θ at (x_t, t).</param>
    /// <param name="timestep">t.</param>
    /// <param name="next">The next timestep, or −1.</param>
    /// <param name="sample">x_t.</param>
    /// <param name="noise">Fresh noise, or null when <see cref="UsesStepNoise"/> is false.</param>
    /// <returns>x_next.</returns>
    protected abstract Tensor StepTo(DiffusionPrediction modelOutput, int timestep, int next, Tensor sample, Tensor? noise);

    /// <summary>Forgets (and releases) the state earlier steps left, before a new run.</summary>
    protected virtual void ResetState()
    {
    }

    /// <summary>
    /// Called on a fresh <see cref="Clone"/>: drop references to state shared with the original without releasing it (the
    /// original owns it).
    /// </summary>
    protected virtual void ForgetSharedState()
    {
    }

    /// <summary>Releases the state; called by <see cref="Dispose()"/>.</summary>
    /// <param name="disposing">True when called from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            ResetState();
        }
    }

    /// <summary>
    /// The decreasing timesteps of a few-step scheduler: <paramref name="steps"/> of them from T − 1 down to 0, spaced as
    /// <paramref name="spacing"/> says (the one place the spacing formulas are chosen).
    /// </summary>
    /// <param name="schedule">The model's noise schedule.</param>
    /// <param name="steps">The number of steps (at most T).</param>
    /// <param name="spacing">The spacing.</param>
    /// <returns>The decreasing sequence.</returns>
    protected IReadOnlyList<int> SpacedTimesteps(NoiseSchedule schedule, int steps, TimestepSpacing spacing)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        if (steps > schedule.Timesteps)
        {
            throw new ArgumentOutOfRangeException(nameof(schedule), $"{Name} with {steps} steps needs at least as many diffusion timesteps; the model has {schedule.Timesteps}.");
        }

        var sequence = spacing switch
        {
            TimestepSpacing.Uniform => NoiseSchedule.EvenlySpacedTimesteps(schedule.Timesteps, steps),
            TimestepSpacing.Karras => schedule.KarrasTimesteps(steps),
            TimestepSpacing.Leading => Enumerable.Range(0, steps).Select(k => k * (schedule.Timesteps / steps)).ToArray(),
            TimestepSpacing.Trailing => Enumerable.Range(0, steps).Select(k => (int)Math.Round(schedule.Timesteps - ((steps - 1 - k) * ((double)schedule.Timesteps / steps)), MidpointRounding.ToEven) - 1).ToArray(),
            _ => throw new ArgumentOutOfRangeException(nameof(spacing), spacing, "Unknown timestep spacing."),
        };
        Array.Reverse(sequence);
        return sequence;
    }
}
