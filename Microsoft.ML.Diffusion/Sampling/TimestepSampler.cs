using System;
using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion;

/// <summary>The loop shared by the samplers: start from seeded noise x_T, walk a decreasing sequence of timesteps, capture.</summary>
public abstract class TimestepSampler : ISampler
{
    private int microBatchSize = 8;

    /// <summary>Gets or sets a value indicating whether x̂₀ is clamped to [−1, 1] at every step. Default true.</summary>
    public bool ClipDenoised { get; set; } = true;

    /// <summary>Gets or sets the classifier-free guidance scale w (class-conditional models only). Default 1 (none).</summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>
    /// Gets or sets how many images one network call processes (default 8). The network and every step run on chunks of
    /// exactly this many images (the last chunk is padded), so on the CPU an image's bits depend only on its seed, its label
    /// and this number — never on the batch it was generated in. 8 is also the fastest chunk for small U-Nets on 2 cores.
    /// </summary>
    public int MicroBatchSize
    {
        get => microBatchSize;
        set => microBatchSize = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "The micro-batch size must be positive.");
    }

    /// <inheritdoc/>
    public Tensor Sample(GaussianDiffusion diffusion, IReadOnlyList<long> seeds, Tensor? classes = null, SamplingTrajectory? trajectory = null)
    {
        ArgumentNullException.ThrowIfNull(diffusion);
        ArgumentNullException.ThrowIfNull(seeds);
        if (seeds.Count == 0)
        {
            throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        }

        if (classes is not null && (classes.dim() != 1 || classes.shape[0] != seeds.Count))
        {
            throw new ArgumentException($"Expected {seeds.Count} labels, one per seed; got shape [{string.Join(", ", classes.shape)}].", nameof(classes));
        }

        IReadOnlyList<int> steps = Timesteps(diffusion.Timesteps);
        var device = diffusion.Device;
        int count = seeds.Count;
        int chunk = microBatchSize;
        int padded = (count + chunk - 1) / chunk * chunk;
        var allSeeds = new long[padded];
        for (int i = 0; i < padded; i++)
        {
            allSeeds[i] = i < count ? seeds[i] : SeededNoise.DeriveSeed(-1, i);
        }

        using var noGrad = no_grad();
        using var noise = new SeededNoise(allSeeds, new long[] { diffusion.Channels, diffusion.ImageHeight, diffusion.ImageWidth }, device, float32);
        using var labels = classes is null ? null : PadLabels(classes, padded, diffusion.Model.Options.ClassCount, device);
        Tensor x = noise.Next();
        for (int i = 0; i < steps.Count; i++)
        {
            int t = steps[i];
            int next = i + 1 < steps.Count ? steps[i + 1] : -1;
            using var scope = NewDisposeScope();
            var fresh = noise.Next(); // drawn for every step so that the noise stream does not depend on the sampler's choices
            var tensorT = full(chunk, t, dtype: int64, device: device);
            var starts = new Tensor[padded / chunk];
            var results = new Tensor[padded / chunk];
            for (int c = 0; c < starts.Length; c++)
            {
                var rows = x[(c * chunk)..((c + 1) * chunk)];
                var prediction = diffusion.PMeanVariance(rows, tensorT, labels?[(c * chunk)..((c + 1) * chunk)], ClipDenoised, GuidanceScale);
                starts[c] = prediction.PredictedStart;
                results[c] = Step(diffusion, rows, t, next, prediction, fresh[(c * chunk)..((c + 1) * chunk)]);
            }

            if (trajectory is not null && i % trajectory.Every == 0)
            {
                trajectory.Add(t, x[..count], cat(starts, 0)[..count]);
            }

            var previous = cat(results, 0);
            x.Dispose();
            x = previous.MoveToOuterDisposeScope();
        }

        var images = x[..count].clone();
        x.Dispose();
        trajectory?.Add(-1, images, images);
        return images;
    }

    /// <summary>The decreasing timesteps to visit, from T − 1 down to 0.</summary>
    /// <param name="timesteps">T.</param>
    /// <returns>The sequence.</returns>
    protected abstract IReadOnlyList<int> Timesteps(int timesteps);

    /// <summary>One reverse step from x_t to x_next (next = −1 means to x₀).</summary>
    /// <param name="diffusion">The model.</param>
    /// <param name="x">x_t.</param>
    /// <param name="t">The current timestep.</param>
    /// <param name="next">The next timestep, or −1.</param>
    /// <param name="prediction">p_θ at (x_t, t).</param>
    /// <param name="noise">Fresh standard normal noise of the shape of x_t, for samplers that inject noise.</param>
    /// <returns>x_next.</returns>
    protected abstract Tensor Step(GaussianDiffusion diffusion, Tensor x, int t, int next, DiffusionPrediction prediction, Tensor noise);

    private static Tensor PadLabels(Tensor classes, int padded, int classCount, Device device)
    {
        using var scope = NewDisposeScope();
        var labels = classes.to(int64, device);
        if (padded > labels.shape[0])
        {
            labels = cat(new[] { labels, full(padded - labels.shape[0], classCount, dtype: int64, device: device) }, 0);
        }

        return labels.MoveToOuterDisposeScope();
    }
}
