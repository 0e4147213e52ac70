namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>The distance between the network's output and its target in the simple loss.</summary>
public enum DiffusionLoss
{
    /// <summary>Mean absolute error (L1).</summary>
    MeanAbsoluteError,

    /// <summary>Mean squared error (L2), the L_simple of Ho et al. 2020.</summary>
    MeanSquaredError,

    /// <summary>Huber (smooth L1) with δ = 1.</summary>
    Huber,
}
