using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The U-Net of Hugging Face diffusers' <c>UNet2DModel</c> (the network of its DDPM and DDIM pipelines), layer for
/// layer: its <c>state_dict</c> keys are diffusers' keys (<c>conv_in.weight</c>, <c>time_embedding.linear_1.weight</c>,
/// <c>down_blocks.0.resnets.0.norm1.weight</c>, <c>mid_block.attentions.0.to_q.weight</c>, …), so imported weights load
/// by name. Maps (x_t, t[, class]) to the prediction (and the variance interpolation value when the output is doubled).
/// </summary>
/// <remarks>
/// <para>Layout: optional x → 2x − 1; conv3×3 in; the sinusoidal time embedding of the timestep (frequencies
/// exp(−ln(10000)·i/(half − freq_shift)), (sin, cos) or flipped) through Linear → SiLU → Linear, plus the class
/// embedding; down blocks (ResNets, attention in the attention variants, stride-2 conv); the middle block (ResNet,
/// attention, ResNet); up blocks on the skip connections (nearest ×2 and a conv); GroupNorm → SiLU → conv3×3 out.</para>
/// <para>Initialisation is TorchSharp's default (diffusers' is PyTorch's default): imported weights replace it.</para>
/// </remarks>
public sealed class DiffusersUNet : Denoiser
{
    private readonly Conv2d conv_in;
    private readonly DiffusersTimestepEmbedding time_embedding;
    private readonly Embedding? class_embedding;
    private readonly ModuleList<DiffusersDownBlock> down_blocks;
    private readonly DiffusersMidBlock? mid_block;
    private readonly ModuleList<DiffusersUpBlock> up_blocks;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    // Not a covariant override: TorchSharp's Module.to indexes public properties by name and fails on two "Options".
    private readonly DiffusersUNetOptions options;
    private readonly Scalar frequencyScale;
    private readonly Scalar frequencyDivisor;

    /// <summary>Initializes a new instance of the <see cref="DiffusersUNet"/> class.</summary>
    /// <param name="options">The shape; validated here.</param>
    public DiffusersUNet(DiffusersUNetOptions options)
        : base(nameof(DiffusersUNet))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.options = options.Clone();
        var widths = options.BlockOutChannels;
        int levels = widths.Count, first = widths[0];
        long time = options.TimeEmbeddingWidth;
        frequencyScale = (-Math.Log(10000)).ToScalar();
        frequencyDivisor = ((first / 2) - options.FreqShift).ToScalar();

        conv_in = nn.Conv2d(options.Channels, first, 3, padding: 1);
        time_embedding = new DiffusersTimestepEmbedding(first, time);
        class_embedding = options.ClassCount > 0 ? nn.Embedding(options.ClassCount, time) : null;
        var down = new List<DiffusersDownBlock>();
        int output = first;
        for (int i = 0; i < levels; i++)
        {
            int input = output;
            output = widths[i];
            down.Add(new DiffusersDownBlock(options, input, output, options.DownBlockTypes[i] == DiffusersUNetOptions.AttentionDownBlock, downsample: i < levels - 1));
        }

        down_blocks = nn.ModuleList(down.ToArray());
        mid_block = options.MiddleBlockEnabled ? new DiffusersMidBlock(options, widths[^1]) : null;
        var up = new List<DiffusersUpBlock>();
        int previous = widths[^1];
        for (int i = 0; i < levels; i++)
        {
            int width = widths[levels - 1 - i];
            int skip = widths[Math.Max(0, levels - 2 - i)];
            up.Add(new DiffusersUpBlock(options, previous, width, skip, options.UpBlockTypes[i] == DiffusersUNetOptions.AttentionUpBlock, upsample: i < levels - 1));
            previous = width;
        }

        up_blocks = nn.ModuleList(up.ToArray());
        conv_norm_out = GroupNorms.Create(options.NormGroups, first, options.NormEps);
        conv_out = nn.Conv2d(first, OutputChannelsOf(options), 3, padding: 1);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override DenoiserOptions Options => options;

    /// <summary>Gets the network's shape (the same object as <see cref="Options"/>, typed).</summary>
    public DiffusersUNetOptions Shape => options;

    /// <summary>Predicts from a batch of noisy images, their timesteps and (for a class-conditional network) labels.</summary>
    /// <param name="x">Images N×C×H×W; H and W divisible by 2^(levels − 1).</param>
    /// <param name="time">Timesteps, a vector of N integers (0-based, as diffusers' schedulers number them).</param>
    /// <param name="classes">Labels in [0, ClassCount] (ClassCount = no label: no class embedding), a vector of N integers; null = no label.</param>
    /// <returns>N×<see cref="Denoiser.OutputChannels"/>×H×W.</returns>
    public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(time);
        CheckInput(x, "UNet2DModel", $"2^(levels − 1) for {options.Levels} levels");
        using var scope = NewDisposeScope();
        var sample = options.CenterInputSample ? (Scalars.Two * x).sub(Scalars.One) : x;
        var embedding = time_embedding.call(TimestepFeatures(time, x.device).to(x.dtype));
        if (class_embedding is not null && classes is not null)
        {
            // Label ClassCount means "no label": diffusers' table has no such row, so it adds nothing.
            embedding = embedding.Plus(LabelRowsWithoutNullClass(class_embedding.weight!, classes));
        }

        var h = conv_in.call(sample);
        var skips = new List<Tensor> { h };
        foreach (var block in down_blocks)
        {
            h = block.Forward(h, embedding, skips);
        }

        if (mid_block is not null)
        {
            h = mid_block.Forward(h, embedding);
        }

        foreach (var block in up_blocks)
        {
            h = block.Forward(h, embedding, skips);
        }

        h = conv_out.call(nn.functional.silu(conv_norm_out.call(h)));
        return h.MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            frequencyScale.Dispose();
            frequencyDivisor.Dispose();
        }

        base.Dispose(disposing);
    }

    private static int OutputChannelsOf(DiffusersUNetOptions options) => options.Channels * (options.LearnedVariance ? 2 : 1);

    /// <summary>
    /// diffusers' <c>Timesteps</c> projection: t·exp(−ln(10000)·i/(half − freq_shift)) for i &lt; half, as (sin, cos) or
    /// (cos, sin), zero-padded to an odd width; in float32, as diffusers computes it.
    /// </summary>
    private Tensor TimestepFeatures(Tensor time, Device device)
    {
        int width = options.BlockOutChannels[0], half = width / 2;
        using Scalar count = half.ToScalar();
        var frequencies = arange(count, dtype: float32, device: device).mul(frequencyScale).div(frequencyDivisor).exp();
        var arguments = time.to(device).to(float32).unsqueeze(1) * frequencies.unsqueeze(0);
        var features = options.FlipSinToCos ? cat(new[] { arguments.cos(), arguments.sin() }, 1) : cat(new[] { arguments.sin(), arguments.cos() }, 1);
        return width % 2 == 1 ? nn.functional.pad(features, new long[] { 0, 1 }) : features;
    }
}
