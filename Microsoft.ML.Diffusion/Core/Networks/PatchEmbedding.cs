using System;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Patchify (Peebles &amp; Xie 2023, §3.2): a convolution with kernel = stride = patch size turns N×C×H×W into
/// N×(H/p·W/p)×D tokens in row-major patch order, plus the fixed 2-D sine-cosine position embedding of each patch.
/// </summary>
/// <remarks>
/// <para>
/// The position embedding of the patch in row r, column c is [sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)] with
/// ω_k = 10000^(−k/(D/4)), k = 0 … D/4 − 1. It is not a parameter: it is computed in <see cref="forward"/> for the input's
/// grid, on the input's device, so it follows the module to any device, works for any image size the patch divides, and is
/// never part of the saved weights (TorchSharp 0.107 moves no non-persistent buffer with <c>.to(device)</c>, and a
/// persistent one would be saved).
/// </para>
/// <para>
/// The patch convolution keeps its Conv2d module (weight D×C×p×p) but is computed as one matrix product over the
/// flattened patches, which is the same sum: libtorch's C++ convolution has no meta-device kernel.
/// </para>
/// </remarks>
internal sealed class PatchEmbedding : nn.Module<Tensor, Tensor>
{
    private const double Theta = 10000;
    private readonly Conv2d proj;
    private readonly long hiddenSize;

    public PatchEmbedding(long channels, long hiddenSize, long patchSize)
        : base(nameof(PatchEmbedding))
    {
        this.hiddenSize = hiddenSize;
        proj = nn.Conv2d(channels, hiddenSize, patchSize, stride: patchSize);
        using (no_grad())
        {
            // Xavier-uniform over the weight seen as a D × (C·p·p) matrix, as a linear layer on flattened patches.
            double bound = Math.Sqrt(6.0 / ((channels * patchSize * patchSize) + hiddenSize));
            nn.init.uniform_(proj.weight!, -bound, bound);
            nn.init.zeros_(proj.bias!);
        }

        RegisterComponents();
    }

    /// <summary>Returns the N×T×D tokens of <paramref name="x"/> (N×C×H×W) with their position embedding added.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var weight = proj.weight!;
        long n = x.shape[0], c = x.shape[1], p = weight.shape[2], rows = x.shape[2] / p, columns = x.shape[3] / p;
        var patches = x.reshape(n, c, rows, p, columns, p).permute(0, 2, 4, 1, 3, 5).reshape(n, rows * columns, c * p * p);
        var tokens = nn.functional.linear(patches, weight.view(hiddenSize, c * p * p), proj.bias);
        return tokens.Plus(Table(rows, columns, tokens.dtype, tokens.device)).MoveToOuterDisposeScope();
    }

    /// <summary>The (rows·columns)×D table of 2-D sine-cosine position embeddings, in row-major order.</summary>
    public Tensor Table(long rows, long columns, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        long quarter = hiddenSize / 4;
        using Scalar quarterCount = quarter.ToScalar(), step = (-Math.Log(Theta) / quarter).ToScalar();
        var omega = exp(arange(quarterCount, dtype: float32, device: device) * step);
        Tensor Axis(long length)
        {
            using Scalar count = length.ToScalar();
            var angles = arange(count, dtype: float32, device: device).unsqueeze(1) * omega.unsqueeze(0);
            return cat(new[] { angles.sin(), angles.cos() }, 1); // length × D/2
        }

        var byColumn = Axis(columns).unsqueeze(0).expand(rows, columns, hiddenSize / 2);
        var byRow = Axis(rows).unsqueeze(1).expand(rows, columns, hiddenSize / 2);
        return cat(new[] { byColumn, byRow }, 2).reshape(rows * columns, hiddenSize).to(dtype).MoveToOuterDisposeScope();
    }
}
