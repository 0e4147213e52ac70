using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using Block = Microsoft.ML.Diffusion.Core.Networks.ImprovedDiffusionUNetOptions.Block;
using BlockKind = Microsoft.ML.Diffusion.Core.Networks.ImprovedDiffusionUNetOptions.BlockKind;
using Place = Microsoft.ML.Diffusion.Core.Networks.ImprovedDiffusionUNetOptions.Place;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The U-Net of openai's improved-diffusion and guided-diffusion (their <c>UNetModel</c>; Nichol &amp; Dhariwal 2021,
/// Dhariwal &amp; Nichol 2021): maps (x_t, t[, class]) to ε or x₀ (and, with learned variance, the interpolation value).
/// Its parameters carry the reference's state-dict names (<c>input_blocks.1.0.in_layers.0.weight</c>,
/// <c>middle_block.1.qkv.weight</c>, <c>out.2.bias</c>, …), so a checkpoint of theirs is loaded, not translated.
/// </summary>
/// <remarks>
/// Layout (<see cref="ImprovedDiffusionUNetOptions"/>): the timestep (mapped and scaled as their sampler does) through a
/// sinusoidal embedding [cos, sin] of width <c>model_channels</c> and an MLP to 4× that width, plus a label embedding;
/// <c>input_blocks</c>: a 3×3 convolution, then per level <c>num_res_blocks</c> residual blocks (with attention at the
/// chosen downsampling rates) and a downsampling step between levels; <c>middle_block</c>: residual block, attention,
/// residual block; <c>output_blocks</c>: per level, from the innermost, <c>num_res_blocks</c> + 1 residual blocks on the
/// concatenation with the matching skip (with attention, and an upsampling step closing each level but the outermost);
/// <c>out</c>: group norm, SiLU, zero-initialised 3×3 convolution. Group norms compute in float32.
/// </remarks>
public sealed class ImprovedDiffusionUNet : Denoiser
{
    private static readonly Scalar MinusLogMaxPeriod = (-Math.Log(10000)).ToScalar();

    private readonly TimeEmbed time_embed;
    private readonly Embedding? label_emb;
    private readonly ModuleList<TimestepSequence> input_blocks;
    private readonly TimestepSequence middle_block;
    private readonly ModuleList<TimestepSequence> output_blocks;

    [ComponentName(Name = "out")]
    private readonly NormSiluConv output;

    private readonly int[]? timestepMap;
    private readonly Scalar? timestepScale;
    private readonly Scalar half;

    // Not a covariant override: TorchSharp's Module.to indexes public properties by name and fails on two "Options".
    private readonly ImprovedDiffusionUNetOptions options;

    /// <summary>Initializes a new instance of the <see cref="ImprovedDiffusionUNet"/> class.</summary>
    /// <param name="options">The shape; validated here.</param>
    public ImprovedDiffusionUNet(ImprovedDiffusionUNetOptions options)
        : base(nameof(ImprovedDiffusionUNet))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.options = options.Clone();
        long time = options.ModelChannels * 4L;
        timestepMap = options.TimestepMap?.ToArray();
        if (options.TimestepScale != 1)
        {
            timestepScale = options.TimestepScale.ToScalar();
        }

        half = (options.ModelChannels / 2).ToScalar();

        var blueprint = options.Blueprint();
        time_embed = new TimeEmbed(options.ModelChannels, time);
        label_emb = options.ClassCount > 0 ? nn.Embedding(options.ClassCount, time) : null;
        input_blocks = nn.ModuleList(Steps(blueprint, Place.Input, time).ToArray());
        middle_block = Steps(blueprint, Place.Middle, time).Single();
        output_blocks = nn.ModuleList(Steps(blueprint, Place.Output, time).ToArray());
        var last = blueprint[^1];
        output = new NormSiluConv(last.Input, last.Output, zero: true);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override DenoiserOptions Options => options;

    /// <summary>Gets the network's shape (the same object as <see cref="Options"/>, typed).</summary>
    public ImprovedDiffusionUNetOptions Shape => options;

    /// <summary>Predicts from a batch of noisy images, their timesteps and (for a class-conditional network) labels.</summary>
    /// <param name="x">Images N×C×H×W; H and W divisible by 2^(levels − 1).</param>
    /// <param name="time">Timesteps, a vector of N integers (0-based), before <see cref="ImprovedDiffusionUNetOptions.TimestepMap"/>.</param>
    /// <param name="classes">Labels in [0, ClassCount] (ClassCount = no label), a vector of N integers; null = no label.</param>
    /// <returns>N×<see cref="Denoiser.OutputChannels"/>×H×W.</returns>
    public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(time);
        CheckInput(x, "improved-diffusion U-Net", $"2^(levels − 1) for {options.ChannelMult.Count} levels");
        using var scope = NewDisposeScope();
        var emb = time_embed.Forward(TimestepEmbedding(time, x.device).to(x.dtype));
        if (label_emb is not null && classes is not null)
        {
            // "No label" (index ClassCount) adds nothing: their networks have exactly ClassCount rows.
            emb = emb.Plus(LabelRowsWithoutNullClass(label_emb.weight!, classes));
        }

        var skips = new Stack<Tensor>();
        var h = x;
        foreach (var step in input_blocks)
        {
            h = step.call(h, emb);
            skips.Push(h);
        }

        h = middle_block.call(h, emb);
        foreach (var step in output_blocks)
        {
            h = step.call(cat(new[] { h, skips.Pop() }, 1), emb);
        }

        var head = output.Conv(output.NormAct(h));
        return head.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The sinusoidal embedding [cos(t·ω_k), sin(t·ω_k)], ω_k = 10000^(−k/half), of the timestep their network sees: the
    /// respaced diffusion's original timestep, times 1000/T when they rescale timesteps.
    /// </summary>
    private Tensor TimestepEmbedding(Tensor time, Device device)
    {
        using var scope = NewDisposeScope();
        var steps = time.to(device);
        if (timestepMap is not null)
        {
            var map = tensor(timestepMap, dtype: int64, device: device);
            steps = map.gather(0, steps.to(int64));
        }

        var t = steps.to(float32);
        if (timestepScale is not null)
        {
            t = t * timestepScale;
        }

        var frequencies = (arange(half, dtype: float32, device: device) * MinusLogMaxPeriod / half).exp();
        var args = t.unsqueeze(1) * frequencies.unsqueeze(0);
        return cat(new[] { args.cos(), args.sin() }, -1).MoveToOuterDisposeScope();
    }

    private IEnumerable<TimestepSequence> Steps(IReadOnlyList<Block> blueprint, Place place, long time)
    {
        var blocks = blueprint.Where(b => b.Place == place && b.Kind is not (BlockKind.Input or BlockKind.Output)).ToList();
        foreach (var group in blocks.GroupBy(b => b.Index))
        {
            yield return new TimestepSequence(group.OrderBy(b => b.Position).Select(b => Layer(b, time)));
        }
    }

    private nn.Module Layer(Block block, long time) => block.Kind switch
    {
        BlockKind.Convolution => nn.Conv2d(block.Input, block.Output, 3, padding: 1),
        BlockKind.ResBlock => new ImprovedResBlock(block.Input, block.Output, time, options.Dropout, options.ScaleShiftNorm, resample: 0),
        BlockKind.DownResBlock => new ImprovedResBlock(block.Input, block.Output, time, options.Dropout, options.ScaleShiftNorm, resample: -1),
        BlockKind.UpResBlock => new ImprovedResBlock(block.Input, block.Output, time, options.Dropout, options.ScaleShiftNorm, resample: 1),
        BlockKind.Attention => new ImprovedAttentionBlock(block.Output, block.Heads, options.NewAttentionOrder),
        BlockKind.Downsample => new ImprovedDownsample(block.Output, options.ConvResample),
        BlockKind.Upsample => new ImprovedUpsample(block.Output, options.ConvResample),
        _ => throw new InvalidOperationException($"No layer for a {block.Kind} block."),
    };

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            timestepScale?.Dispose();
            half.Dispose();
        }

        base.Dispose(disposing);
    }
}
