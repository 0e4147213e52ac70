using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// The one sampling loop: draws each image's x_T from its seed (<see cref="SeededNoise"/>), runs the network on fixed
/// chunks of images (the last one padded), asks <see cref="GaussianDiffusion.PMeanVariance"/> for p_θ with this loop's
/// guidance scale and x̂₀ clipping, lets the <see cref="Scheduler"/> take each step, and applies edits (image-to-image
/// strength, inpainting with RePaint resampling) and trajectories around it. An image depends only on its seed, its label,
/// its edit and the chunk size, never on the batch.
/// </summary>
/// <remarks>
/// The loop never steps <see cref="Scheduler"/> itself: each chunk steps a <see cref="DiffusionScheduler.Clone"/> of it,
/// disposed at the end, so a multistep scheduler keeps one history per chunk and one loop can serve concurrent calls.
/// </remarks>
public sealed class SamplingLoop
{
    private int? microBatchSize;

    /// <summary>Initializes a new instance of the <see cref="SamplingLoop"/> class.</summary>
    /// <param name="scheduler">The reverse-process algorithm; default DDPM through all T steps.</param>
    public SamplingLoop(DiffusionScheduler? scheduler = null)
    {
        Scheduler = scheduler ?? new DdpmScheduler();
    }

    /// <summary>Gets the reverse-process algorithm (a template: the loop steps copies of it).</summary>
    public DiffusionScheduler Scheduler { get; }

    /// <summary>Gets or sets a value indicating whether x̂₀ is clamped to [−1, 1] at every step. Default true.</summary>
    public bool ClipDenoised { get; set; } = true;

    /// <summary>Gets or sets the classifier-free guidance scale w (class-conditional models only). Default 1 (none).</summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>
    /// Gets or sets how many images one network call processes, or null (default) to choose by device: on the CPU 8 (the
    /// fastest chunk for small U-Nets on 2 cores), elsewhere <see cref="DeviceMicroBatchSize"/>. The network and every step
    /// run on chunks of exactly this many images (the last chunk is padded), so on the CPU an image's bits depend only on
    /// its seed, its label and this number — never on the batch it was generated in.
    /// </summary>
    public int? MicroBatchSize
    {
        get => microBatchSize;
        set => microBatchSize = value is null or >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "The micro-batch size must be positive.");
    }

    /// <summary>The chunk used on the CPU when <see cref="MicroBatchSize"/> is null.</summary>
    public const int CpuMicroBatchSize = 8;

    /// <summary>
    /// The largest chunk used on a GPU when <see cref="MicroBatchSize"/> is null: a request of up to this many images runs as
    /// one batch (a GPU is bound by kernel launches, not arithmetic, for the small images of this library).
    /// </summary>
    public const int DeviceMicroBatchSize = 256;

    /// <summary>Gets the chunk size a request of <paramref name="count"/> images runs in on <paramref name="device"/>.</summary>
    /// <param name="device">The device of the model.</param>
    /// <param name="count">The number of images asked for.</param>
    /// <returns>The chunk size.</returns>
    public int ChunkSize(Device device, int count)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (microBatchSize is int fixedSize)
        {
            return fixedSize;
        }

        return device.type == DeviceType.CPU ? CpuMicroBatchSize : Math.Clamp(count, 1, DeviceMicroBatchSize);
    }

    /// <summary>
    /// Generates one image per seed, or edits given images (image-to-image, inpainting). An image depends only on its
    /// seed, its label and its edit, never on the batch.
    /// </summary>
    /// <param name="diffusion">The model.</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="classes">Labels for a class-conditional model (ClassCount = no label), or null.</param>
    /// <param name="trajectory">Receives intermediate states, or null.</param>
    /// <param name="edit">The images to start from and the pixels to keep, or null to generate from noise.</param>
    /// <returns>Images N×C×H×W in [−1, 1] (clamped when <see cref="ClipDenoised"/>), on the model's device.</returns>
    public Tensor Sample(GaussianDiffusion diffusion, IReadOnlyList<long> seeds, Tensor? classes = null, SamplingTrajectory? trajectory = null, ImageEdit? edit = null)
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

        var imageShape = new long[] { diffusion.Channels, diffusion.ImageHeight, diffusion.ImageWidth };
        if (edit is not null)
        {
            CheckEdit(edit, seeds.Count, imageShape);
        }

        var device = diffusion.Device;
        int count = seeds.Count;
        int chunk = ChunkSize(device, count);
        int chunks = (count + chunk - 1) / chunk;
        var schedulers = new DiffusionScheduler[chunks];
        try
        {
            for (int c = 0; c < chunks; c++)
            {
                schedulers[c] = Scheduler.Clone();
                schedulers[c].SetTimesteps(diffusion.Schedule);
            }

            IReadOnlyList<int> steps = schedulers[0].Timesteps;
            if (edit is not null)
            {
                int start = (int)Math.Round(edit.Strength * (diffusion.Timesteps - 1), MidpointRounding.AwayFromZero);
                steps = steps.Where(t => t <= start).ToArray();
                if (steps.Count == 0)
                {
                    steps = new[] { schedulers[0].Timesteps[^1] };
                }
            }

            return Run(diffusion, schedulers, steps, seeds, classes, trajectory, edit, imageShape, chunk);
        }
        finally
        {
            foreach (var scheduler in schedulers)
            {
                scheduler?.Dispose();
            }
        }
    }

    private Tensor Run(GaussianDiffusion diffusion, DiffusionScheduler[] schedulers, IReadOnlyList<int> steps, IReadOnlyList<long> seeds, Tensor? classes, SamplingTrajectory? trajectory, ImageEdit? edit, long[] imageShape, int chunk)
    {
        var device = diffusion.Device;
        int count = seeds.Count;
        int chunks = schedulers.Length;
        int padded = chunks * chunk;
        var allSeeds = new long[padded];
        for (int i = 0; i < padded; i++)
        {
            allSeeds[i] = i < count ? seeds[i] : SeededNoise.DeriveSeed(-1, i);
        }

        using var noGrad = no_grad();
        using var noise = new SeededNoise(allSeeds, imageShape, device, float32);
        using var labels = classes is null ? null : PadLabels(classes, padded, diffusion.Model.ClassCount, device);

        // An edit's known pixels are noised with a stream of their own (derived from each seed), so that the sampler's
        // noise stream is the same with and without an edit.
        using var editNoise = edit is null ? null : new SeededNoise(allSeeds.Select(s => SeededNoise.DeriveSeed(s, 1)).ToArray(), imageShape, device, float32);
        using var known = edit is null ? null : Pad(edit.Images.to(float32, device), padded);
        using var keep = edit?.Mask is null ? null : Pad(edit.Mask.to(float32, device).expand(edit.Images.shape), padded);
        bool usesStepNoise = schedulers[0].UsesStepNoise;
        Tensor x = noise.Next();
        if (known is not null)
        {
            using var start = x;
            using Scalar first = steps[0].ToScalar();
            x = diffusion.QSample(known, full(padded, first, dtype: int64, device: device), start);
        }

        for (int i = 0; i < steps.Count; i++)
        {
            int t = steps[i];
            int next = i + 1 < steps.Count ? steps[i + 1] : -1;
            using var scope = NewDisposeScope();
            var before = x;
            int rounds = keep is null || next < 0 ? 1 : edit!.Resampling;
            for (int round = 0; round < rounds; round++)
            {
                if (round > 0)
                {
                    // RePaint: go back from x_next to x_t with fresh noise, q(x_t | x_next), and do the step again.
                    double ratio = diffusion.Schedule.AlphasCumprod[t] / diffusion.Schedule.AlphasCumprod[next];
                    using Scalar kept = Math.Sqrt(ratio).ToScalar(), added = Math.Sqrt(1 - ratio).ToScalar();
                    x = (kept * x).Plus(added * editNoise!.Next());
                }

                // Schedulers that inject noise draw it at every step, so that the noise stream does not depend on the
                // scheduler's choices (DDIM with η = 1 and DDPM follow the same path); deterministic ones draw nothing
                // after x_T.
                var fresh = usesStepNoise ? noise.Next() : null;
                using Scalar step = t.ToScalar();
                var tensorT = full(chunk, step, dtype: int64, device: device);
                var starts = new Tensor[chunks];
                var results = new Tensor[chunks];
                for (int c = 0; c < chunks; c++)
                {
                    var rows = chunks == 1 ? x : x[(c * chunk)..((c + 1) * chunk)];
                    var chunkLabels = labels is null || chunks == 1 ? labels : labels[(c * chunk)..((c + 1) * chunk)];
                    var chunkNoise = fresh is null || chunks == 1 ? fresh : fresh[(c * chunk)..((c + 1) * chunk)];
                    var prediction = diffusion.PMeanVariance(rows, tensorT, chunkLabels, ClipDenoised, GuidanceScale);
                    starts[c] = prediction.PredictedStart;
                    results[c] = schedulers[c].Step(prediction, t, rows, chunkNoise);
                }

                if (round == 0 && trajectory is not null && i % trajectory.Every == 0)
                {
                    trajectory.Add(t, x[..count], (chunks == 1 ? starts[0] : cat(starts, 0))[..count]);
                }

                var result = chunks == 1 ? results[0] : cat(results, 0);
                if (keep is not null)
                {
                    // Inpainting: the kept pixels are the known image at the new noise level (the image itself at the end).
                    using Scalar nextStep = next.ToScalar();
                    var knownAtNext = next < 0 ? known! : diffusion.QSample(known!, full(padded, nextStep, dtype: int64, device: device), editNoise!.Next());
                    result = (keep * knownAtNext).Plus(Scalars.One.Minus(keep) * result);
                }

                x = result;
            }

            x = x.MoveToOuterDisposeScope();
            before.Dispose();
        }

        var images = x[..count].clone();
        x.Dispose();
        trajectory?.Add(-1, images, images);
        return images;
    }

    private static void CheckEdit(ImageEdit edit, int count, long[] imageShape)
    {
        var shape = edit.Images.shape;
        if (shape.Length != 4 || shape[0] != count || shape[1] != imageShape[0] || shape[2] != imageShape[1] || shape[3] != imageShape[2])
        {
            throw new ArgumentException($"Expected {count} images {imageShape[0]}×{imageShape[1]}×{imageShape[2]} to edit, one per seed; got shape [{string.Join(", ", shape)}].", nameof(edit));
        }

        if (edit.Mask is Tensor mask && (mask.dim() != 4 || mask.shape[0] != count || (mask.shape[1] != 1 && mask.shape[1] != imageShape[0]) || mask.shape[2] != imageShape[1] || mask.shape[3] != imageShape[2]))
        {
            throw new ArgumentException($"Expected a mask of {count}×1×{imageShape[1]}×{imageShape[2]} (or one channel per image channel); got shape [{string.Join(", ", mask.shape)}].", nameof(edit));
        }
    }

    private static Tensor Pad(Tensor rows, int padded)
    {
        using var scope = NewDisposeScope();
        var result = padded > rows.shape[0] ? cat(new[] { rows, zeros_like(rows[..1]).expand(padded - rows.shape[0], -1, -1, -1) }, 0) : rows.alias();
        return result.contiguous().MoveToOuterDisposeScope();
    }

    private static Tensor PadLabels(Tensor classes, int padded, int classCount, Device device)
    {
        using var scope = NewDisposeScope();
        var labels = classes.to(int64, device);
        if (padded > labels.shape[0])
        {
            using Scalar nullClass = classCount.ToScalar();
            labels = cat(new[] { labels, full(padded - labels.shape[0], nullClass, dtype: int64, device: device) }, 0);
        }

        return labels.MoveToOuterDisposeScope();
    }
}
