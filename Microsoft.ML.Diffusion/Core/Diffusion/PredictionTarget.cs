namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>What the network predicts from x_t and t.</summary>
public enum PredictionTarget
{
    /// <summary>The noise ε that was added (Ho et al. 2020, eq. 14).</summary>
    Noise,

    /// <summary>The clean image x₀.</summary>
    Start,

    /// <summary>The velocity v = √ᾱ_t ε − √(1 − ᾱ_t) x₀ (Salimans &amp; Ho 2022).</summary>
    Velocity,
}
