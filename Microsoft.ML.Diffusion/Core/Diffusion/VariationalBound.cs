using System;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>
/// The variational bound −log p(x₀) ≤ L_T + Σ_{t&gt;1} L_{t−1} + L₀ (Ho et al. 2020, eq. 5) of a batch, in bits per dimension.
/// </summary>
/// <param name="Total">Per image: the sum of every term, shape N.</param>
/// <param name="Prior">Per image: the prior term L_T = KL(q(x_T | x₀) ‖ N(0, I)), shape N.</param>
/// <param name="Terms">Per image and step: column 0 is the decoder NLL L₀, column t the KL term L_t, shape N×T.</param>
public sealed record VariationalBound(Tensor Total, Tensor Prior, Tensor Terms) : IDisposable
{
    /// <summary>Gets the decoder term L₀ per image, shape N.</summary>
    public Tensor Decoder => Terms[.., 0];

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Total.Dispose();
        Prior.Dispose();
        Terms.Dispose();
    }
}
