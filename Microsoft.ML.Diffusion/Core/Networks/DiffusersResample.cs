using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>diffusers' <c>Downsample2D</c> with a convolution: a 3×3 stride-2 conv (padding 1, or 0 after padding one pixel right and bottom).</summary>
internal sealed class DiffusersDownsample : nn.Module<Tensor, Tensor>
{
    private static readonly long[] RightBottom = { 0, 1, 0, 1 };
    private readonly Conv2d conv;
    private readonly bool padRightBottom;

    public DiffusersDownsample(long width, int padding)
        : base(nameof(DiffusersDownsample))
    {
        conv = nn.Conv2d(width, width, 3, stride: 2, padding: padding);
        padRightBottom = padding == 0;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (!padRightBottom)
        {
            return conv.call(x);
        }

        using var padded = nn.functional.pad(x, RightBottom);
        return conv.call(padded);
    }
}

/// <summary>diffusers' <c>Upsample2D</c> with a convolution: nearest-neighbour ×2, then a 3×3 conv.</summary>
internal sealed class DiffusersUpsample : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public DiffusersUpsample(long width)
        : base(nameof(DiffusersUpsample))
    {
        conv = nn.Conv2d(width, width, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var upsampled = nn.functional.interpolate(x, scale_factor: new[] { 2.0, 2.0 }, mode: InterpolationMode.Nearest);
        return conv.call(upsampled);
    }
}
