namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>The variance Σ_θ(x_t, t) of the reverse process p(x_{t−1} | x_t).</summary>
public enum VarianceType
{
    /// <summary>σ²_t = β̃_t, the posterior variance (the lower bound of Ho et al. 2020).</summary>
    FixedSmall,

    /// <summary>σ²_t = β_t (the upper bound; β̃₂ at the first step, as improved-diffusion does).</summary>
    FixedLarge,

    /// <summary>
    /// Learned interpolation exp(v log β_t + (1 − v) log β̃_t) (Nichol &amp; Dhariwal 2021, eq. 15),
    /// trained with the hybrid loss L_simple + λ·L_vlb.
    /// </summary>
    LearnedRange,
}
