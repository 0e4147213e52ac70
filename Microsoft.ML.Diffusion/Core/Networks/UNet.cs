using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The U-Net noise predictor of denoising-diffusion-pytorch 2.1.1 (Ho et al. 2020, Appendix B; Nichol &amp; Dhariwal 2021):
/// maps (x_t, t[, class]) to ε, x₀ or v (and, when the variance is learned, its interpolation value).
/// </summary>
/// <remarks>
/// Layout: a 7×7 init conv; a sinusoidal time embedding → Linear → GELU → Linear (width 4·dim); per down level two ResNet
/// blocks, linear attention (full attention at the innermost level) and a 2×2 space-to-depth downsample (none at the last
/// level); a middle of ResNet block, full attention, ResNet block; up levels mirroring the down levels with skip
/// concatenation and nearest upsampling; a final ResNet block on the concatenation with the init-conv output and a 1×1 conv.
/// With <see cref="DenoiserOptions.ClassCount"/> &gt; 0 a label embedding (one extra row for "no label") is added to the time embedding.
/// </remarks>
public sealed class UNet : Denoiser
{
    private readonly Conv2d init_conv;
    private readonly SinusoidalPositionEmbedding time_embedding;
    private readonly Linear time_mlp_in;
    private readonly Linear time_mlp_out;
    private readonly Embedding? class_embedding;
    private readonly ModuleList<UNetLevel> downs;
    private readonly ResnetBlock mid_block1;
    private readonly FullAttention mid_attn;
    private readonly ResnetBlock mid_block2;
    private readonly ModuleList<UNetLevel> ups;
    private readonly ResnetBlock final_res_block;
    private readonly Conv2d final_conv;

    // Levels at least this wide keep their activations channels-last on the CPU (measured on configs S, A and B: 4–9 %
    // faster per training step than NCHW everywhere; 16 and 4 were slower than 8). Narrower, wider-channel levels stay NCHW.
    private const int ChannelsLastMinWidth = 8;

    /// <summary>Initializes a new instance of the <see cref="UNet"/> class.</summary>
    /// <param name="options">The shape; validated here.</param>
    public UNet(UNetOptions options)
        : base(nameof(UNet))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.options = options.Clone();
        int dim = options.Dim;
        int heads = options.AttentionHeads;
        int dimHead = options.AttentionDimHead;
        double dropout = options.Dropout;
        long timeDim = dim * 4L;

        init_conv = nn.Conv2d(options.Channels, dim, 7, padding: 3);
        time_embedding = new SinusoidalPositionEmbedding(dim);
        time_mlp_in = nn.Linear(dim, timeDim);
        time_mlp_out = nn.Linear(timeDim, timeDim);
        class_embedding = options.ClassCount > 0 ? nn.Embedding(options.ClassCount + 1, timeDim) : null;

        var dims = new List<long> { dim };
        dims.AddRange(options.DimMults.Select(m => (long)dim * m));
        var pairs = dims.Zip(dims.Skip(1), (i, o) => (In: i, Out: o)).ToList();
        int levels = pairs.Count;

        var downLevels = new List<UNetLevel>();
        for (int i = 0; i < levels; i++)
        {
            (long dimIn, long dimOut) = pairs[i];
            bool last = i == levels - 1;
            downLevels.Add(new UNetLevel(
                new ResnetBlock(dimIn, dimIn, timeDim, dropout),
                new ResnetBlock(dimIn, dimIn, timeDim, dropout),
                Attention(dimIn, fullAttention: last, heads, dimHead),
                last ? nn.Conv2d(dimIn, dimOut, 3, padding: 1) : new Downsample(dimIn, dimOut)));
        }

        long midDim = dims[^1];
        mid_block1 = new ResnetBlock(midDim, midDim, timeDim, dropout);
        mid_attn = new FullAttention(midDim, heads, dimHead);
        mid_block2 = new ResnetBlock(midDim, midDim, timeDim, dropout);

        var upLevels = new List<UNetLevel>();
        for (int i = levels - 1; i >= 0; i--)
        {
            (long dimIn, long dimOut) = pairs[i];
            bool last = i == 0;
            upLevels.Add(new UNetLevel(
                new ResnetBlock(dimOut + dimIn, dimOut, timeDim, dropout),
                new ResnetBlock(dimOut + dimIn, dimOut, timeDim, dropout),
                Attention(dimOut, fullAttention: i == levels - 1, heads, dimHead),
                last ? nn.Conv2d(dimOut, dimIn, 3, padding: 1) : new Networks.Upsample(dimOut, dimIn)));
        }

        downs = nn.ModuleList(downLevels.ToArray());
        ups = nn.ModuleList(upLevels.ToArray());
        final_res_block = new ResnetBlock(dim * 2L, dim, timeDim, dropout);
        final_conv = nn.Conv2d(dim, options.Channels * (options.LearnedVariance ? 2 : 1), 1);
        RegisterComponents();
    }

    // Not a covariant override: TorchSharp's Module.to indexes public properties by name and fails on two "Options".
    private readonly UNetOptions options;

    /// <inheritdoc/>
    public override DenoiserOptions Options => options;

    /// <summary>Gets the U-Net's shape (the same object as <see cref="Options"/>, typed).</summary>
    public UNetOptions Shape => options;

    /// <summary>Predicts from a batch of noisy images, their timesteps and (for a class-conditional network) labels.</summary>
    /// <param name="x">Images N×C×H×W; H and W divisible by 2^(levels − 1).</param>
    /// <param name="time">Timesteps, a vector of N integers (0-based).</param>
    /// <param name="classes">Labels in [0, ClassCount] (ClassCount = no label), a vector of N integers; null = no label.</param>
    /// <returns>N×<see cref="Denoiser.OutputChannels"/>×H×W.</returns>
    public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(time);
        CheckInput(x, "U-Net", $"2^(levels − 1) for {options.Levels} levels");
        using var scope = NewDisposeScope();
        bool cpu = x.device_type == DeviceType.CPU;
        bool ChannelsLast(int level) => cpu && (x.shape[3] >> level) >= ChannelsLastMinWidth;
        var h = MemoryFormat.To(init_conv.call(x), ChannelsLast(0));
        var r = h;
        var t = time_mlp_out.call(nn.functional.gelu(time_mlp_in.call(time_embedding.call(time).to(x.dtype))));
        if (class_embedding is not null)
        {
            using var unconditional = options.ClassCount.ToScalar();
            var labels = classes ?? full(x.shape[0], unconditional, dtype: int64, device: x.device);
            t = t.Plus(class_embedding.call(labels.to(int64)));
        }

        var skips = new Stack<Tensor>();
        int depth = 0;
        foreach (var level in downs)
        {
            h = MemoryFormat.To(h, ChannelsLast(depth));
            h = level.Block1.call(h, t);
            skips.Push(h);
            h = level.Attend(level.Block2.call(h, t));
            skips.Push(h);
            h = level.Resample(h);
            depth++;
        }

        depth--;
        h = MemoryFormat.To(h, ChannelsLast(depth));
        h = mid_block1.call(h, t);
        h = mid_attn.call(h).Plus(h);
        h = mid_block2.call(h, t);

        foreach (var level in ups)
        {
            h = MemoryFormat.To(h, ChannelsLast(depth));
            h = level.Block1.call(cat(new[] { h, skips.Pop() }, 1), t);
            h = level.Block2.call(cat(new[] { h, skips.Pop() }, 1), t);
            h = level.Resample(level.Attend(h));
            depth--;
        }

        h = final_res_block.call(cat(new[] { MemoryFormat.To(h, ChannelsLast(0)), r }, 1), t);
        return final_conv.call(h).MoveToOuterDisposeScope();
    }

    private static nn.Module<Tensor, Tensor> Attention(long dim, bool fullAttention, int heads, int dimHead) =>
        fullAttention ? new FullAttention(dim, heads, dimHead) : new LinearAttention(dim, heads, dimHead);

}
