using System;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Sampling;

namespace Microsoft.ML.Diffusion;

/// <summary>How a <see cref="DiffusionSampler"/> generates images.</summary>
public sealed class DiffusionSamplerOptions
{
    private DiffusionScheduler scheduler = new DdimScheduler();

    /// <summary>
    /// Gets or sets the reverse-process algorithm and its own settings (steps, η, spacing, order…), stored in model files
    /// by its registered name with those settings (<see cref="SchedulerRegistry"/>). Default DDIM, 50 steps, η = 0. For a
    /// registered name, <c>SchedulerRegistry.Create(name)</c>.
    /// </summary>
    public DiffusionScheduler Scheduler
    {
        get => scheduler;
        set => scheduler = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Gets or sets the classifier-free guidance scale for class-conditional models (1 = none). Default 1.</summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Gets or sets the run seed: images without a seed column get seeds derived from it and their row index. Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>Gets or sets a value indicating whether x̂₀ is clamped to [−1, 1] at each step. Default true.</summary>
    public bool ClipDenoised { get; set; } = true;

    /// <summary>
    /// Gets or sets how many images one network call processes, or null (default) to choose by device: 8 on the CPU, up to
    /// 256 at once on a GPU (see <see cref="SamplingLoop.MicroBatchSize"/>). On the CPU an image's bits depend only on its
    /// seed, its label and this number. Model files written before this option became nullable store 8: set null to let a
    /// GPU use large batches.
    /// </summary>
    public int? MicroBatchSize { get; set; }

    /// <summary>
    /// Gets or sets the precision the network runs in while sampling: <see cref="Precision.BFloat16"/> or
    /// <see cref="Precision.Float16"/> sample with a 16-bit copy of the network (made once per model and precision; the
    /// model and its file stay float32), the scheduler's maths staying float32. Stored in model files only when not
    /// Float32, so files without it (all earlier ones) read as Float32. Default <see cref="Precision.Float32"/>.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public Precision Precision { get; set; }

    /// <summary>Gets or sets the optional input column of per-row seeds (Int32, UInt32 or Int64). Default "Seed".</summary>
    public string SeedColumnName { get; set; } = "Seed";

    /// <summary>
    /// Gets or sets the optional input column of class labels for a class-conditional model; null means the label column the
    /// model was trained with. Rows without the column (or with a missing key) are generated unconditionally.
    /// </summary>
    public string? LabelColumnName { get; set; }

    /// <summary>
    /// Gets or sets an input column of images to edit, or null (default) to generate from noise: an
    /// <see cref="Microsoft.ML.Data.MLImage"/> column of the model's size, or a Single or Byte vector of C·H·W values in
    /// [0, 255], planar. With it, each row's image is re-imagined (image-to-image, <see cref="Strength"/>) or, with
    /// <see cref="MaskColumnName"/>, inpainted.
    /// </summary>
    public string? InputImageColumnName { get; set; }

    /// <summary>
    /// Gets or sets an optional input column of masks for inpainting: a Single or Byte vector of H·W (or C·H·W) values,
    /// non-zero where the input image's pixel is kept, zero where it is regenerated. Needs <see cref="InputImageColumnName"/>.
    /// </summary>
    public string? MaskColumnName { get; set; }

    /// <summary>Gets or sets the edit strength s ∈ (0, 1]: the chain starts at timestep round(s·(T − 1)) from the noised input image. Default 1.</summary>
    public double Strength { get; set; } = 1.0;

    /// <summary>Gets or sets RePaint's resampling rounds per step for inpainting (1 = none). Default 1.</summary>
    public int Resampling { get; set; } = 1;

    /// <summary>Gets or sets the output column of generated images (<see cref="Microsoft.ML.Data.MLImage"/>). Default "GeneratedImage".</summary>
    public string OutputImageColumnName { get; set; } = "GeneratedImage";

    /// <summary>Gets or sets the output column of generated pixels (Single vector, planar C·H·W, values in [0, 255]). Default "GeneratedPixels".</summary>
    public string OutputPixelsColumnName { get; set; } = "GeneratedPixels";

    /// <summary>Returns a copy (with its own copy of <see cref="Scheduler"/>).</summary>
    /// <returns>The copy.</returns>
    public DiffusionSamplerOptions Clone()
    {
        var copy = (DiffusionSamplerOptions)MemberwiseClone();
        copy.scheduler = scheduler.Clone();
        return copy;
    }

    /// <summary>Throws a clear exception for an invalid value.</summary>
    public void Validate()
    {
        if (scheduler is null)
        {
            throw new ArgumentNullException(nameof(Scheduler), "DiffusionSamplerOptions.Scheduler is required.");
        }

        if (Strength is not (> 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(Strength), Strength, "DiffusionSamplerOptions.Strength must be in (0, 1].");
        }

        if (Resampling < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Resampling), Resampling, "DiffusionSamplerOptions.Resampling must be at least 1.");
        }

        if (MaskColumnName is not null && InputImageColumnName is null)
        {
            throw new ArgumentException("DiffusionSamplerOptions.MaskColumnName needs InputImageColumnName: inpainting keeps pixels of an input image.", nameof(MaskColumnName));
        }

        if (!double.IsFinite(GuidanceScale))
        {
            throw new ArgumentOutOfRangeException(nameof(GuidanceScale), GuidanceScale, "DiffusionSamplerOptions.GuidanceScale must be finite.");
        }

        if (!Precision.IsDefined())
        {
            throw new ArgumentOutOfRangeException(nameof(Precision), Precision, "DiffusionSamplerOptions.Precision must be Float32, BFloat16 or Float16.");
        }

        if (MicroBatchSize is < 1 or > ModelLimits.MaxMicroBatch)
        {
            throw new ArgumentOutOfRangeException(
                nameof(MicroBatchSize), MicroBatchSize, $"DiffusionSamplerOptions.MicroBatchSize must be in [1, {ModelLimits.MaxMicroBatch}]; got {MicroBatchSize}.");
        }

        if (string.IsNullOrWhiteSpace(OutputImageColumnName) || string.IsNullOrWhiteSpace(OutputPixelsColumnName) || OutputImageColumnName == OutputPixelsColumnName)
        {
            throw new ArgumentException("The two output column names must be non-empty and different.", nameof(OutputImageColumnName));
        }
    }

    /// <summary>Builds the sampling loop these options describe: <see cref="Scheduler"/> with the guidance, clipping and micro-batch settings.</summary>
    /// <returns>A loop (it steps copies of <see cref="Scheduler"/>, never the scheduler itself).</returns>
    public SamplingLoop CreateSamplingLoop()
    {
        Validate();
        return new SamplingLoop(scheduler)
        {
            ClipDenoised = ClipDenoised,
            GuidanceScale = GuidanceScale,
            MicroBatchSize = MicroBatchSize,
        };
    }
}
