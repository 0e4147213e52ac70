using System;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>What <see cref="DiffusersPipeline.Import"/> may take from the caller rather than from the pipeline folder.</summary>
public sealed class DiffusersImportOptions
{
    /// <summary>
    /// Gets or sets the side of the square images to generate, or null for the UNet config's <c>sample_size</c> (required
    /// when the config has none). It must divide by 2^(levels − 1).
    /// </summary>
    public int? ImageSize { get; set; }

    /// <summary>
    /// Gets or sets the sampling settings of the imported sampler, or null for the pipeline's own: a DDPMScheduler config
    /// gives DDPM over all T steps, a DDIMScheduler config DDIM with η = 0, 50 steps (as DDIMPipeline's defaults) and its
    /// timestep spacing; other scheduler classes give DDIM with 50 uniform steps. <c>clip_sample</c> sets
    /// <see cref="DiffusionSamplerOptions.ClipDenoised"/> either way.
    /// </summary>
    public DiffusionSamplerOptions? Sampling { get; set; }

    /// <summary>Throws a clear exception for an invalid value.</summary>
    public void Validate()
    {
        if (ImageSize is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(ImageSize), ImageSize, "ImageSize must be positive, or null for the config's sample_size.");
        }

        Sampling?.Validate();
    }
}
