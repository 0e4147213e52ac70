using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>Group norms initialised as PyTorch initialises them (every network that normalises by groups builds them here).</summary>
internal static class GroupNorms
{
    /// <summary>
    /// A GroupNorm with γ = 1 and β = 0, as PyTorch initialises it: TorchSharp 0.107's <c>nn.GroupNorm</c> leaves its affine
    /// parameters uninitialised (a test checks that a fresh network's parameters are finite and its norms start as the identity).
    /// </summary>
    public static GroupNorm Create(long groups, long channels, double eps)
    {
        var norm = nn.GroupNorm(groups, channels, eps);
        using (no_grad())
        {
            norm.weight!.fill_(Scalars.One);
            norm.bias!.zero_();
        }

        return norm;
    }
}
