namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>How a few-step sampler chooses the timesteps it visits.</summary>
public enum TimestepSpacing
{
    /// <summary>Evenly spaced in t from T − 1 down to 0 (as DDIM).</summary>
    Uniform,

    /// <summary>Evenly spaced in σ^(1/ρ), ρ = 7, with σ_t = √((1 − ᾱ_t)/ᾱ_t) (Karras et al. 2022, eq. 5): more steps at low noise.</summary>
    Karras,
}
