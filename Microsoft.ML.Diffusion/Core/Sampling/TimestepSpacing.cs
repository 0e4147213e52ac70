namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>How a few-step sampler chooses the timesteps it visits.</summary>
public enum TimestepSpacing
{
    /// <summary>Evenly spaced in t from T − 1 down to 0 (as DDIM).</summary>
    Uniform,

    /// <summary>Evenly spaced in σ^(1/ρ), ρ = 7, with σ_t = √((1 − ᾱ_t)/ᾱ_t) (Karras et al. 2022, eq. 5): more steps at low noise.</summary>
    Karras,

    /// <summary>
    /// diffusers' "leading" spacing: k·⌊T/S⌋ for k = S − 1 … 0 (plus the scheduler's steps offset where it has one), so the
    /// first step is below T − 1 and the last is 0.
    /// </summary>
    Leading,

    /// <summary>diffusers' "trailing" spacing: round(T − k·T/S) − 1 for k = 0 … S − 1, so the first step is T − 1.</summary>
    Trailing,
}
