using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// ResNet block conditioned on the time embedding: conv3×3 → RMSNorm → x·(scale + 1) + shift → SiLU → dropout,
/// then conv3×3 → RMSNorm → SiLU, plus a residual (1×1 conv when the width changes).
/// </summary>
internal sealed class ResnetBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear mlp;
    private readonly Conv2d block1_proj;
    private readonly RmsNorm block1_norm;
    private readonly Dropout block1_dropout;
    private readonly Conv2d block2_proj;
    private readonly RmsNorm block2_norm;
    private readonly Conv2d? res_conv;

    public ResnetBlock(long dimIn, long dimOut, long timeEmbeddingDim, double dropout)
        : base(nameof(ResnetBlock))
    {
        mlp = nn.Linear(timeEmbeddingDim, dimOut * 2);
        block1_proj = nn.Conv2d(dimIn, dimOut, 3, padding: 1);
        block1_norm = new RmsNorm(dimOut);
        block1_dropout = nn.Dropout(dropout);
        block2_proj = nn.Conv2d(dimOut, dimOut, 3, padding: 1);
        block2_norm = new RmsNorm(dimOut);
        res_conv = dimIn != dimOut ? nn.Conv2d(dimIn, dimOut, 1) : null;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor timeEmbedding)
    {
        using var scope = NewDisposeScope();
        var scaleShift = mlp.call(nn.functional.silu(timeEmbedding)).unsqueeze(-1).unsqueeze(-1).chunk(2, 1);
        var h = block1_norm.call(block1_proj.call(x));
        h = (h * scaleShift[0].Plus(Scalars.One)).Plus(scaleShift[1]);
        h = block1_dropout.call(nn.functional.silu(h));
        h = nn.functional.silu(block2_norm.call(block2_proj.call(h)));
        var residual = res_conv is null ? x : res_conv.call(x);
        return h.Plus(residual).MoveToOuterDisposeScope();
    }
}
