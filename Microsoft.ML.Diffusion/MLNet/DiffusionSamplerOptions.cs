using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Sampling;

namespace Microsoft.ML.Diffusion;

/// <summary>How a <see cref="DiffusionSampler"/> generates images.</summary>
public sealed class DiffusionSamplerOptions
{
    /// <summary>Gets or sets the reverse process. Default <see cref="SamplingMethod.Ddim"/>.</summary>
    public SamplingMethod Method { get; set; } = SamplingMethod.Ddim;

    /// <summary>
    /// Gets or sets the name of a sampler registered with <see cref="SchedulerRegistry"/>, or null (default) to use
    /// <see cref="Method"/>. Stored in model files by name, with these settings (as "SamplerName", the name model files
    /// had before the algorithm types were called schedulers, so that those files, and their checkpoints, still read).
    /// </summary>
    [System.Text.Json.Serialization.JsonPropertyName("SamplerName")]
    public string? SchedulerName { get; set; }

    /// <summary>Gets or sets the number of steps (network evaluations) of DDIM, DPM-Solver++ and Euler-ancestral; DDPM uses all T. Default 50.</summary>
    public int Steps { get; set; } = 50;

    /// <summary>
    /// Gets or sets η ∈ [0, 1]: DDIM's fresh noise per step (0 = deterministic); Euler-ancestral's noise scale, where 0
    /// (the default) means 1 (for the plain Euler method use <see cref="EulerAncestralScheduler"/> with η = 0). Default 0.
    /// </summary>
    public double Eta { get; set; }

    /// <summary>Gets or sets how DPM-Solver++ and Euler-ancestral space their timesteps. Default <see cref="TimestepSpacing.Uniform"/>.</summary>
    public TimestepSpacing Spacing { get; set; } = TimestepSpacing.Uniform;

    /// <summary>Gets or sets the classifier-free guidance scale for class-conditional models (1 = none). Default 1.</summary>
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Gets or sets the run seed: images without a seed column get seeds derived from it and their row index. Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>Gets or sets a value indicating whether x̂₀ is clamped to [−1, 1] at each step. Default true.</summary>
    public bool ClipDenoised { get; set; } = true;

    /// <summary>
    /// Gets or sets how many images one network call processes, or null (default) to choose by device: 8 on the CPU, up to
    /// 256 at once on a GPU (see <see cref="TimestepScheduler.MicroBatchSize"/>). On the CPU an image's bits depend only on its
    /// seed, its label and this number. Model files written before this option became nullable store 8: set null to let a
    /// GPU use large batches.
    /// </summary>
    public int? MicroBatchSize { get; set; }

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

    /// <summary>Returns a copy.</summary>
    /// <returns>The copy.</returns>
    public DiffusionSamplerOptions Clone() => (DiffusionSamplerOptions)MemberwiseClone();

    /// <summary>Throws a clear exception for an invalid value.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Method))
        {
            throw new ArgumentOutOfRangeException(nameof(Method), Method, "Unknown sampling method.");
        }

        if (SchedulerName is string name && !SchedulerRegistry.Names.Contains(name, StringComparer.OrdinalIgnoreCase))
        {
            throw new ArgumentOutOfRangeException(nameof(SchedulerName), name, $"No sampler is registered as '{name}'; known: {string.Join(", ", SchedulerRegistry.Names)}.");
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

        if (!Enum.IsDefined(Spacing))
        {
            throw new ArgumentOutOfRangeException(nameof(Spacing), Spacing, "Unknown timestep spacing.");
        }

        if (Steps < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "DiffusionSamplerOptions.Steps must be at least 1.");
        }

        if (Eta is < 0 or > 1 || double.IsNaN(Eta))
        {
            throw new ArgumentOutOfRangeException(nameof(Eta), Eta, "DiffusionSamplerOptions.Eta must be in [0, 1].");
        }

        if (!double.IsFinite(GuidanceScale))
        {
            throw new ArgumentOutOfRangeException(nameof(GuidanceScale), GuidanceScale, "DiffusionSamplerOptions.GuidanceScale must be finite.");
        }

        if (MicroBatchSize is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MicroBatchSize), MicroBatchSize, "DiffusionSamplerOptions.MicroBatchSize must be positive.");
        }

        if (string.IsNullOrWhiteSpace(OutputImageColumnName) || string.IsNullOrWhiteSpace(OutputPixelsColumnName) || OutputImageColumnName == OutputPixelsColumnName)
        {
            throw new ArgumentException("The two output column names must be non-empty and different.", nameof(OutputImageColumnName));
        }
    }

    /// <summary>Builds the sampler these options describe.</summary>
    /// <returns>A DDPM or DDIM sampler.</returns>
    public TimestepScheduler CreateScheduler()
    {
        Validate();
        TimestepScheduler sampler = SchedulerName is string name ? SchedulerRegistry.Create(name, this) : SchedulerRegistry.Create(Method, this);
        sampler.ClipDenoised = ClipDenoised;
        sampler.GuidanceScale = GuidanceScale;
        sampler.MicroBatchSize = MicroBatchSize;
        return sampler;
    }
}
