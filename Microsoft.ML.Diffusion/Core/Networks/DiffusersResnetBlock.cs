using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// diffusers' <c>ResnetBlock2D</c> (default time-scale-shift): GroupNorm → SiLU → conv3×3, plus Linear(SiLU(temb)) per
/// channel, GroupNorm → SiLU → dropout → conv3×3, plus the input (through a 1×1 <c>conv_shortcut</c> when the width
/// changes), all divided by the output scale factor.
/// </summary>
internal sealed class DiffusersResnetBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly Linear time_emb_proj;
    private readonly GroupNorm norm2;
    private readonly Dropout dropout;
    private readonly Conv2d conv2;
    private readonly Conv2d? conv_shortcut;
    private readonly Scalar? outputScale;

    public DiffusersResnetBlock(long input, long output, long timeEmbedding, int groups, double eps, double dropoutRate, double outputScaleFactor)
        : base(nameof(DiffusersResnetBlock))
    {
        norm1 = GroupNorms.Create(groups, input, eps);
        conv1 = nn.Conv2d(input, output, 3, padding: 1);
        time_emb_proj = nn.Linear(timeEmbedding, output);
        norm2 = GroupNorms.Create(groups, output, eps);
        dropout = nn.Dropout(dropoutRate);
        conv2 = nn.Conv2d(output, output, 3, padding: 1);
        conv_shortcut = input != output ? nn.Conv2d(input, output, 1) : null;
        if (outputScaleFactor != 1)
        {
            outputScale = outputScaleFactor.ToScalar();
        }

        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor timeEmbedding)
    {
        using var scope = NewDisposeScope();
        var h = conv1.call(nn.functional.silu(norm1.call(x)));
        h = h.Plus(time_emb_proj.call(nn.functional.silu(timeEmbedding)).unsqueeze(-1).unsqueeze(-1));
        h = conv2.call(dropout.call(nn.functional.silu(norm2.call(h))));
        var sum = (conv_shortcut is null ? x : conv_shortcut.call(x)).Plus(h);
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
