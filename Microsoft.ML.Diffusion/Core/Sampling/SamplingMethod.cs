namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>The reverse process used to generate images.</summary>
public enum SamplingMethod
{
    /// <summary>Ancestral sampling through all T steps (Ho et al. 2020, Algorithm 2).</summary>
    Ddpm,

    /// <summary>Denoising diffusion implicit models over a subsequence of steps, η ∈ [0, 1] (Song et al. 2021, eq. 12).</summary>
    Ddim,

    /// <summary>DPM-Solver++(2M), a second-order multistep ODE solver (Lu et al. 2022): 10–20 steps.</summary>
    DpmSolverPlusPlus,

    /// <summary>Euler-ancestral (Karras et al. 2022; k-diffusion), a first-order stochastic sampler; η scales its noise.</summary>
    EulerAncestral,
}
