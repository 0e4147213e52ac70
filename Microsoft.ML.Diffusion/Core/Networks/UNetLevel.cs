using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>One resolution level of the U-Net: two ResNet blocks, attention with a residual, and a resampling layer.</summary>
internal sealed class UNetLevel : nn.Module
{
    private readonly ResnetBlock block1;
    private readonly ResnetBlock block2;
    private readonly nn.Module<Tensor, Tensor> attn;
    private readonly nn.Module<Tensor, Tensor> resample;

    public UNetLevel(ResnetBlock block1, ResnetBlock block2, nn.Module<Tensor, Tensor> attn, nn.Module<Tensor, Tensor> resample)
        : base(nameof(UNetLevel))
    {
        this.block1 = block1;
        this.block2 = block2;
        this.attn = attn;
        this.resample = resample;
        RegisterComponents();
    }

    public ResnetBlock Block1 => block1;

    public ResnetBlock Block2 => block2;

    public Tensor Attend(Tensor x)
    {
        using var attended = attn.call(x);
        return attended.Plus(x);
    }

    public Tensor Resample(Tensor x) => resample.call(x);
}
