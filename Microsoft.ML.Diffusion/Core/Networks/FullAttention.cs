using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>Multi-head scaled dot-product attention over pixels with learned memory key/value slots, then a 1×1 conv.</summary>
internal sealed class FullAttention : nn.Module<Tensor, Tensor>
{
    private const int MemorySlots = 4;
    private const long ExplicitProductMaxPixels = 256;
    private readonly RmsNorm norm;
    private readonly Parameter mem_kv;
    private readonly Conv2d to_qkv;
    private readonly Conv2d to_out;
    private readonly int heads;
    private readonly int dimHead;
    private readonly Scalar scale;

    public FullAttention(long dim, int heads, int dimHead)
        : base(nameof(FullAttention))
    {
        this.heads = heads;
        this.dimHead = dimHead;
        scale = (1.0 / System.Math.Sqrt(dimHead)).ToScalar();
        long hidden = (long)heads * dimHead;
        norm = new RmsNorm(dim);
        mem_kv = new Parameter(randn(2, heads, MemorySlots, dimHead));
        to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias: false);
        to_out = nn.Conv2d(hidden, dim, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[2], w = x.shape[3];
        var qkv = Pointwise.Project(to_qkv, norm.call(x)).view(b, 3, heads, dimHead, h * w).transpose(-1, -2); // b 3 heads n d
        var q = qkv[.., 0];
        var memory = mem_kv.unsqueeze(1).expand(2, b, heads, MemorySlots, dimHead);
        var k = cat(new[] { memory[0], qkv[.., 1] }, -2);
        var v = cat(new[] { memory[1], qkv[.., 2] }, -2);
        // (Mixed precision: the explicit softmax runs in float32; libtorch's fused kernel accumulates in float32 itself.)
        // Few pixels (the innermost levels): the explicit product is faster on the CPU than libtorch's fused kernel (6 vs
        // 10 ms forward + backward for 64 images at 7×7); many pixels: the fused kernel, which never forms the n × n matrix.
        var output = h * w <= ExplicitProductMaxPixels
            ? matmul((matmul(q, k.transpose(-1, -2)) * scale).SoftmaxInFloat32(-1), v)
            : nn.functional.scaled_dot_product_attention(q, k, v); // b heads n d
        output = output.transpose(-1, -2).reshape(b, (long)heads * dimHead, h, w);
        return to_out.call(output).MoveToOuterDisposeScope();
    }
}
