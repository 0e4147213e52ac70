using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// diffusers' <c>DownBlock2D</c> / <c>AttnDownBlock2D</c>: ResNet blocks (each followed by attention in the attention
/// variant), then a downsampling conv except at the innermost level. Every ResNet's (or attention's) output and the
/// downsampled result are skip connections.
/// </summary>
internal sealed class DiffusersDownBlock : nn.Module
{
    private readonly ModuleList<DiffusersResnetBlock> resnets;
    private readonly ModuleList<DiffusersAttention>? attentions;
    private readonly ModuleList<DiffusersDownsample>? downsamplers;

    public DiffusersDownBlock(DiffusersUNetOptions options, long input, int output, bool attention, bool downsample)
        : base(nameof(DiffusersDownBlock))
    {
        long time = options.TimeEmbeddingWidth;
        resnets = nn.ModuleList(Enumerable.Range(0, options.LayersPerBlock)
            .Select(j => new DiffusersResnetBlock(j == 0 ? input : output, output, time, options.NormGroups, options.NormEps, options.Dropout, 1)).ToArray());
        var (heads, headDim) = options.AttentionShape(output);
        attentions = attention
            ? nn.ModuleList(Enumerable.Range(0, options.LayersPerBlock).Select(_ => new DiffusersAttention(output, heads, headDim, options.NormGroups, options.NormEps, 1)).ToArray())
            : null;
        downsamplers = downsample ? nn.ModuleList(new DiffusersDownsample(output, options.DownsamplePadding)) : null;
        RegisterComponents();
    }

    /// <summary>Runs the block, adding its skip connections to <paramref name="skips"/>.</summary>
    public Tensor Forward(Tensor h, Tensor timeEmbedding, List<Tensor> skips)
    {
        for (int j = 0; j < resnets.Count; j++)
        {
            h = resnets[j].call(h, timeEmbedding);
            if (attentions is not null)
            {
                h = attentions[j].call(h);
            }

            skips.Add(h);
        }

        if (downsamplers is not null)
        {
            h = downsamplers[0].call(h);
            skips.Add(h);
        }

        return h;
    }
}

/// <summary>
/// diffusers' <c>UpBlock2D</c> / <c>AttnUpBlock2D</c>: <c>layers_per_block</c> + 1 ResNet blocks, each on the
/// concatenation of the running features and the last unused skip connection (each followed by attention in the
/// attention variant), then nearest ×2 and a conv except at the outermost level.
/// </summary>
internal sealed class DiffusersUpBlock : nn.Module
{
    private readonly ModuleList<DiffusersResnetBlock> resnets;
    private readonly ModuleList<DiffusersAttention>? attentions;
    private readonly ModuleList<DiffusersUpsample>? upsamplers;

    public DiffusersUpBlock(DiffusersUNetOptions options, long previous, int output, long skipInput, bool attention, bool upsample)
        : base(nameof(DiffusersUpBlock))
    {
        long time = options.TimeEmbeddingWidth;
        int layers = options.LayersPerBlock + 1;
        resnets = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(j => new DiffusersResnetBlock((j == 0 ? previous : output) + (j == layers - 1 ? skipInput : output), output, time, options.NormGroups, options.NormEps, options.Dropout, 1))
            .ToArray());
        var (heads, headDim) = options.AttentionShape(output);
        attentions = attention
            ? nn.ModuleList(Enumerable.Range(0, layers).Select(_ => new DiffusersAttention(output, heads, headDim, options.NormGroups, options.NormEps, 1)).ToArray())
            : null;
        upsamplers = upsample ? nn.ModuleList(new DiffusersUpsample(output)) : null;
        RegisterComponents();
    }

    /// <summary>Runs the block, taking its skip connections from the end of <paramref name="skips"/>.</summary>
    public Tensor Forward(Tensor h, Tensor timeEmbedding, List<Tensor> skips)
    {
        for (int j = 0; j < resnets.Count; j++)
        {
            var skip = skips[^1];
            skips.RemoveAt(skips.Count - 1);
            h = resnets[j].call(cat(new[] { h, skip }, 1), timeEmbedding);
            if (attentions is not null)
            {
                h = attentions[j].call(h);
            }
        }

        return upsamplers is null ? h : upsamplers[0].call(h);
    }
}

/// <summary>diffusers' <c>UNetMidBlock2D</c> with one layer: ResNet, attention (unless <c>add_attention</c> is false), ResNet.</summary>
internal sealed class DiffusersMidBlock : nn.Module
{
    private readonly ModuleList<DiffusersAttention>? attentions;
    private readonly ModuleList<DiffusersResnetBlock> resnets;

    public DiffusersMidBlock(DiffusersUNetOptions options, int width)
        : base(nameof(DiffusersMidBlock))
    {
        long time = options.TimeEmbeddingWidth;
        double scale = options.MidBlockScaleFactor;
        var (heads, headDim) = options.AttentionShape(width);
        attentions = options.AddAttention
            ? nn.ModuleList(new DiffusersAttention(width, heads, headDim, options.AttentionNormGroups ?? options.NormGroups, options.NormEps, scale))
            : null;
        resnets = nn.ModuleList(
            new DiffusersResnetBlock(width, width, time, options.NormGroups, options.NormEps, options.Dropout, scale),
            new DiffusersResnetBlock(width, width, time, options.NormGroups, options.NormEps, options.Dropout, scale));
        RegisterComponents();
    }

    public Tensor Forward(Tensor h, Tensor timeEmbedding)
    {
        h = resnets[0].call(h, timeEmbedding);
        if (attentions is not null)
        {
            h = attentions[0].call(h);
        }

        return resnets[1].call(h, timeEmbedding);
    }
}

/// <summary>diffusers' <c>TimestepEmbedding</c>: Linear → SiLU → Linear.</summary>
internal sealed class DiffusersTimestepEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Linear linear_1;
    private readonly Linear linear_2;

    public DiffusersTimestepEmbedding(long input, long width)
        : base(nameof(DiffusersTimestepEmbedding))
    {
        linear_1 = nn.Linear(input, width);
        linear_2 = nn.Linear(width, width);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        return linear_2.call(nn.functional.silu(linear_1.call(x)));
    }
}
