using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Networks;

/// <summary>
/// Linear attention (Shen et al. 2018) with learned memory key/value slots: softmax of q over features, of k over
/// positions, context = k·vᵀ, output = contextᵀ·q; then a 1×1 conv and RMSNorm. Cost is linear in the pixel count.
/// </summary>
internal sealed class LinearAttention : nn.Module<Tensor, Tensor>
{
    private const int MemorySlots = 4;
    private readonly RmsNorm norm;
    private readonly Parameter mem_kv;
    private readonly Conv2d to_qkv;
    private readonly Conv2d to_out_conv;
    private readonly RmsNorm to_out_norm;
    private readonly int heads;
    private readonly int dimHead;
    private readonly double scale;

    public LinearAttention(long dim, int heads, int dimHead)
        : base(nameof(LinearAttention))
    {
        this.heads = heads;
        this.dimHead = dimHead;
        scale = 1.0 / System.Math.Sqrt(dimHead);
        long hidden = (long)heads * dimHead;
        norm = new RmsNorm(dim);
        mem_kv = new Parameter(randn(2, heads, dimHead, MemorySlots));
        to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias: false);
        to_out_conv = nn.Conv2d(hidden, dim, 1);
        to_out_norm = new RmsNorm(dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[2], w = x.shape[3];
        var qkv = Pointwise.Project(to_qkv, norm.call(x)).view(b, 3, heads, dimHead, h * w);
        var q = qkv[.., 0];
        var k = qkv[.., 1];
        var v = qkv[.., 2];
        var memory = mem_kv.unsqueeze(1).expand(2, b, heads, dimHead, MemorySlots);
        k = cat(new[] { memory[0], k }, -1);
        v = cat(new[] { memory[1], v }, -1);
        q = q.softmax(-2) * scale;
        k = k.softmax(-1);
        var context = matmul(k, v.transpose(-1, -2));   // b h d e
        var output = matmul(context.transpose(-1, -2), q); // b h e n
        output = output.reshape(b, (long)heads * dimHead, h, w);
        return to_out_norm.call(to_out_conv.call(output)).MoveToOuterDisposeScope();
    }
}
