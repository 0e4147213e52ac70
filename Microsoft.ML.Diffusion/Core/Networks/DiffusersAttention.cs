using System;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// diffusers' spatial self-attention block (<c>Attention</c> as the UNet2DModel's blocks build it): GroupNorm over the
/// channels, linear q/k/v over the pixels, multi-head scaled dot-product attention, a linear output (<c>to_out.0</c>), plus
/// the input, divided by the output scale factor.
/// </summary>
internal sealed class DiffusersAttention : nn.Module<Tensor, Tensor>
{
    private readonly GroupNorm group_norm;
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly ModuleList<Linear> to_out;
    private readonly int heads;
    private readonly int headDim;
    private readonly Scalar? outputScale;

    public DiffusersAttention(long width, int heads, int headDim, int groups, double eps, double outputScaleFactor)
        : base(nameof(DiffusersAttention))
    {
        this.heads = heads;
        this.headDim = headDim;
        long inner = (long)heads * headDim;
        group_norm = GroupNorms.Create(groups, width, eps);
        to_q = nn.Linear(width, inner);
        to_k = nn.Linear(width, inner);
        to_v = nn.Linear(width, inner);
        to_out = nn.ModuleList(nn.Linear(inner, width));
        if (outputScaleFactor != 1)
        {
            outputScale = outputScaleFactor.ToScalar();
        }

        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        var tokens = group_norm.call(x.view(b, c, h * w)).transpose(1, 2); // b n c
        Tensor Heads(Linear projection) => projection.call(tokens).view(b, -1, heads, headDim).transpose(1, 2); // b heads n d
        var attended = nn.functional.scaled_dot_product_attention(Heads(to_q), Heads(to_k), Heads(to_v));
        var output = to_out[0].call(attended.transpose(1, 2).reshape(b, -1, (long)heads * headDim)); // b n c
        var sum = output.transpose(1, 2).reshape(b, c, h, w).Plus(x);
        return (outputScale is null ? sum : sum.div(outputScale)).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            outputScale?.Dispose();
        }

        base.Dispose(disposing);
    }
}
