using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// A DiT block with adaLN-Zero conditioning (Peebles &amp; Xie 2023, §3.2, Figure 3): from the conditioning c a linear layer
/// regresses six vectors (shift, scale, gate for the attention; shift, scale, gate for the MLP), and
/// x ← x + gate₁ · Attention(LN(x)·(1 + scale₁) + shift₁), x ← x + gate₂ · MLP(LN(x)·(1 + scale₂) + shift₂),
/// the MLP being Linear → GELU (tanh approximation) → Linear.
/// </summary>
/// <remarks>The modulation layer starts at zero, so every gate is 0 and the block is the identity at initialisation.</remarks>
internal sealed class DiTBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear modulation;
    private readonly TokenAttention attention;
    private readonly Linear mlp_in;
    private readonly Linear mlp_out;

    public DiTBlock(long hiddenSize, long heads, long mlpHiddenSize)
        : base(nameof(DiTBlock))
    {
        modulation = nn.Linear(hiddenSize, hiddenSize * 6);
        attention = new TokenAttention(hiddenSize, heads);
        mlp_in = nn.Linear(hiddenSize, mlpHiddenSize);
        mlp_out = nn.Linear(mlpHiddenSize, hiddenSize);
        TransformerInit.Zero(modulation);
        TransformerInit.XavierUniform(mlp_in);
        TransformerInit.XavierUniform(mlp_out);
        RegisterComponents();
    }

    /// <param name="x">Tokens N×T×D.</param>
    /// <param name="condition">The conditioning (time + class embedding), N×D.</param>
    /// <returns>N×T×D.</returns>
    public override Tensor forward(Tensor x, Tensor condition)
    {
        using var scope = NewDisposeScope();
        var m = modulation.call(nn.functional.silu(condition)).chunk(6, 1); // shift, scale, gate (attention); shift, scale, gate (MLP)
        var h = attention.call(AdaptiveLayerNorm.Modulate(x, m[0], m[1]));
        x = x.Plus(m[2].unsqueeze(1) * h);
        h = AdaptiveLayerNorm.Modulate(x, m[3], m[4]);
        h = mlp_out.call(nn.functional.gelu(mlp_in.call(h), GELU.Approximate.tanh));
        return x.Plus(m[5].unsqueeze(1) * h).MoveToOuterDisposeScope();
    }
}
