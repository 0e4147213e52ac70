namespace Microsoft.ML.Diffusion.Core.Schedules;

/// <summary>The family of variance schedules β₁…β_T of the forward (noising) process.</summary>
public enum BetaSchedule
{
    /// <summary>Linear from 1e-4 to 0.02, scaled by 1000/T (Ho et al. 2020).</summary>
    Linear,

    /// <summary>ᾱ_t = cos²(((t/T)+s)/(1+s)·π/2) with s = 0.008, β clipped at 0.999 (Nichol &amp; Dhariwal 2021, eq. 17).</summary>
    Cosine,

    /// <summary>ᾱ_t from a sigmoid over [−3, 3] with τ = 1, as in denoising-diffusion-pytorch (Jabri et al. 2022).</summary>
    Sigmoid,

    /// <summary>
    /// β_t growing geometrically between two bounds: by default 1e-4 and 0.06 scaled by 1000/T (the upper bound is three
    /// times the linear schedule's 0.02, so that ᾱ_T ≈ 5e-5 and x_T is pure noise; see <see cref="NoiseSchedule.Geometric"/>).
    /// </summary>
    Geometric,

    /// <summary>A β array supplied by the caller.</summary>
    Custom,
}
