using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Multi-head self-attention over tokens (Vaswani et al. 2017), as in ViT and DiT: one linear layer makes queries, keys and
/// values, libtorch's <c>scaled_dot_product_attention</c> attends (softmax(q·kᵀ/√d)·v per head; on the meta device the same
/// product written out), a linear layer projects back.
/// </summary>
internal sealed class TokenAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly Linear proj;
    private readonly long heads;
    private readonly long headSize;

    public TokenAttention(long hiddenSize, long heads)
        : base(nameof(TokenAttention))
    {
        this.heads = heads;
        headSize = hiddenSize / heads;
        qkv = nn.Linear(hiddenSize, hiddenSize * 3);
        proj = nn.Linear(hiddenSize, hiddenSize);
        TransformerInit.XavierUniform(qkv);
        TransformerInit.XavierUniform(proj);
        RegisterComponents();
    }

    /// <summary>Attends over the tokens of <paramref name="x"/> (N×T×D); returns N×T×D.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], tokens = x.shape[1];
        var split = qkv.call(x).view(n, tokens, 3, heads, headSize).permute(2, 0, 3, 1, 4); // 3 N heads T d
        var attended = Attend(split[0], split[1], split[2], textbook: x.device_type == DeviceType.META); // N heads T d
        return proj.call(attended.transpose(1, 2).reshape(n, tokens, heads * headSize)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// softmax(q·kᵀ/√d)·v over the last two axes: libtorch's fused <c>scaled_dot_product_attention</c>, or with
    /// <paramref name="textbook"/> the same product written out — for the meta device, where libtorch's C++ attention
    /// has no kernel (its safe softmax calls <c>where</c>, which has none there).
    /// </summary>
    internal static Tensor Attend(Tensor q, Tensor k, Tensor v, bool textbook)
    {
        if (!textbook)
        {
            return nn.functional.scaled_dot_product_attention(q, k, v);
        }

        using var scope = NewDisposeScope();
        using var scale = (1.0 / System.Math.Sqrt(q.shape[^1])).ToScalar();
        var weights = (matmul(q, k.transpose(-2, -1)) * scale).SoftmaxInFloat32(-1);
        return matmul(weights, v).MoveToOuterDisposeScope();
    }
}
