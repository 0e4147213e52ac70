using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The DiT's output layer (Peebles &amp; Xie 2023, §3.2): adaptive layer norm (shift and scale regressed from the
/// conditioning), then a linear decoder from each token to its patch, p·p·C_out values.
/// </summary>
/// <remarks>Both linear layers start at zero, so the untrained network predicts exactly 0.</remarks>
internal sealed class DiTFinalLayer : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear modulation;
    private readonly Linear linear;

    public DiTFinalLayer(long hiddenSize, long patchSize, long outputChannels)
        : base(nameof(DiTFinalLayer))
    {
        modulation = nn.Linear(hiddenSize, hiddenSize * 2);
        linear = nn.Linear(hiddenSize, patchSize * patchSize * outputChannels);
        TransformerInit.Zero(modulation);
        TransformerInit.Zero(linear);
        RegisterComponents();
    }

    /// <param name="x">Tokens N×T×D.</param>
    /// <param name="condition">The conditioning, N×D.</param>
    /// <returns>N×T×(p·p·C_out), each token's patch in (row, column, channel) order.</returns>
    public override Tensor forward(Tensor x, Tensor condition)
    {
        using var scope = NewDisposeScope();
        var m = modulation.call(nn.functional.silu(condition)).chunk(2, 1); // shift, scale
        return linear.call(AdaptiveLayerNorm.Modulate(x, m[0], m[1])).MoveToOuterDisposeScope();
    }
}
