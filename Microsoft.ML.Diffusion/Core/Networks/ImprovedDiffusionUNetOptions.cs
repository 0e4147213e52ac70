using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Shape of the <see cref="ImprovedDiffusionUNet"/>: the <c>UNetModel</c> of openai's improved-diffusion (Nichol &amp;
/// Dhariwal 2021) and guided-diffusion (Dhariwal &amp; Nichol 2021), with their constructor arguments as properties, so
/// that a state dict written by their code loads into it under the same parameter names.
/// </summary>
/// <remarks>
/// <para>Their <c>model_channels</c> is <see cref="ModelChannels"/>, <c>num_res_blocks</c> <see cref="ResBlocks"/>,
/// <c>channel_mult</c> <see cref="ChannelMult"/>, <c>attention_resolutions</c> (as downsampling rates, the way their
/// <c>UNetModel</c> takes them) <see cref="AttentionDownsampleRates"/>, <c>num_heads</c> <see cref="Heads"/>,
/// <c>num_head_channels</c> <see cref="HeadChannels"/>, <c>num_heads_upsample</c> <see cref="UpsampleHeads"/>,
/// <c>use_scale_shift_norm</c> <see cref="ScaleShiftNorm"/>, <c>conv_resample</c> <see cref="ConvResample"/>,
/// <c>resblock_updown</c> <see cref="ResBlockUpDown"/>, <c>use_new_attention_order</c> <see cref="NewAttentionOrder"/>,
/// <c>dropout</c> <see cref="Dropout"/>, <c>num_classes</c> <see cref="DenoiserOptions.ClassCount"/>, <c>in_channels</c>
/// <see cref="DenoiserOptions.Channels"/>, and <c>out_channels</c> = 2 × in_channels is
/// <see cref="DenoiserOptions.LearnedVariance"/> (their <c>learn_sigma</c>).</para>
/// <para>What their sampler does to the timestep before the network sees it is part of the network here:
/// <see cref="TimestepMap"/> (a respaced diffusion's original timesteps, their <c>timestep_map</c>) and
/// <see cref="TimestepScale"/> (1000/T when they rescale timesteps), so that the model file alone reproduces their
/// sampler.</para>
/// <para>A class-conditional network has exactly <see cref="DenoiserOptions.ClassCount"/> label rows, as theirs: the
/// label <see cref="DenoiserOptions.ClassCount"/> ("no label") adds nothing to the time embedding (these networks were
/// never trained without a label, so classifier-free guidance has no meaning for them).</para>
/// </remarks>
public sealed class ImprovedDiffusionUNetOptions : DenoiserOptions
{
    /// <summary>The kind's name in model files.</summary>
    public const string KindName = "ImprovedDiffusionUNet";

    /// <summary>The number of groups of every group normalisation (their <c>GroupNorm32</c>): every width must divide by it.</summary>
    public const int NormGroups = 32;

    private const int MaxLevels = 16;
    private const int MaxWidth = 16_384;
    private const int MaxResBlocks = 64;
    private const int MaxHeads = 4096;
    private const int MaxTimestep = 1_000_000;

    /// <inheritdoc/>
    public override string Kind => KindName;

    /// <summary>Gets or sets the base width (<c>model_channels</c>, their flag <c>--num_channels</c>). Default 128.</summary>
    public int ModelChannels { get; set; } = 128;

    /// <summary>Gets or sets the residual blocks per level on the way down (<c>num_res_blocks</c>; one more on the way up). Default 2.</summary>
    public int ResBlocks { get; set; } = 2;

    /// <summary>
    /// Gets or sets the width multiplier of each level (<c>channel_mult</c>); a level is ⌊multiplier × <see cref="ModelChannels"/>⌋
    /// wide, and the first convolution is as wide as the first level. Default (1, 2, 3, 4), theirs for 64×64 images.
    /// </summary>
    public IReadOnlyList<double> ChannelMult { get; set; } = new[] { 1.0, 2, 3, 4 };

    /// <summary>
    /// Gets or sets the downsampling rates at which the blocks attend (<c>attention_resolutions</c> as their <c>UNetModel</c>
    /// takes it: 1 is the input's resolution, 2 half of it, …). Default (4, 8): their flag "16,8" for 64×64 images.
    /// </summary>
    public IReadOnlyList<int> AttentionDownsampleRates { get; set; } = new[] { 4, 8 };

    /// <summary>Gets or sets the attention heads (<c>num_heads</c>) where <see cref="HeadChannels"/> is null. Default 4.</summary>
    public int Heads { get; set; } = 4;

    /// <summary>Gets or sets the width of one head (<c>num_head_channels</c>; guided-diffusion), or null to use <see cref="Heads"/>. Default null.</summary>
    public int? HeadChannels { get; set; }

    /// <summary>Gets or sets the heads of the attention blocks on the way up (<c>num_heads_upsample</c>), or null for <see cref="Heads"/>. Default null.</summary>
    public int? UpsampleHeads { get; set; }

    /// <summary>Gets or sets the dropout probability in the residual blocks (<c>dropout</c>). Default 0.</summary>
    public double Dropout { get; set; }

    /// <summary>Gets or sets a value indicating whether the time embedding scales and shifts the normalised activations (<c>use_scale_shift_norm</c>). Default true.</summary>
    public bool ScaleShiftNorm { get; set; } = true;

    /// <summary>Gets or sets a value indicating whether resampling uses convolutions (<c>conv_resample</c>; else average pooling and plain upsampling). Default true.</summary>
    public bool ConvResample { get; set; } = true;

    /// <summary>Gets or sets a value indicating whether residual blocks resample (<c>resblock_updown</c>; guided-diffusion). Default false.</summary>
    public bool ResBlockUpDown { get; set; }

    /// <summary>Gets or sets a value indicating whether q, k and v are split before the heads (<c>use_new_attention_order</c>; guided-diffusion). Default false.</summary>
    public bool NewAttentionOrder { get; set; }

    /// <summary>
    /// Gets or sets the factor the (mapped) timestep is multiplied by before its embedding: 1000/T for their
    /// <c>rescale_timesteps</c>, else 1. Default 1.
    /// </summary>
    public double TimestepScale { get; set; } = 1;

    /// <summary>
    /// Gets or sets the original timestep each of the diffusion's timesteps stands for (their respaced diffusion's
    /// <c>timestep_map</c>), or null when the diffusion is not respaced. Default null.
    /// </summary>
    public IReadOnlyList<int>? TimestepMap { get; set; }

    /// <summary>Gets the width of each level: ⌊multiplier × <see cref="ModelChannels"/>⌋.</summary>
    [JsonIgnore]
    public IReadOnlyList<int> LevelWidths => ChannelMult.Select(m => (int)(m * ModelChannels)).ToArray();

    /// <summary>Gets the factor every image side must divide by: 2^(levels − 1).</summary>
    public override int SizeDivisor => 1 << (ChannelMult.Count - 1);

    /// <inheritdoc/>
    public override Denoiser CreateDenoiser() => new ImprovedDiffusionUNet(this);

    /// <inheritdoc/>
    public override long? CountParameters() => Blueprint().Sum(block => block.Parameters);

    /// <summary>Returns a deep copy.</summary>
    /// <returns>The copy.</returns>
    public override ImprovedDiffusionUNetOptions Clone() => new()
    {
        Channels = Channels,
        LearnedVariance = LearnedVariance,
        ClassCount = ClassCount,
        ModelChannels = ModelChannels,
        ResBlocks = ResBlocks,
        ChannelMult = ChannelMult.ToArray(),
        AttentionDownsampleRates = AttentionDownsampleRates.ToArray(),
        Heads = Heads,
        HeadChannels = HeadChannels,
        UpsampleHeads = UpsampleHeads,
        Dropout = Dropout,
        ScaleShiftNorm = ScaleShiftNorm,
        ConvResample = ConvResample,
        ResBlockUpDown = ResBlockUpDown,
        NewAttentionOrder = NewAttentionOrder,
        TimestepScale = TimestepScale,
        TimestepMap = TimestepMap?.ToArray(),
    };

    /// <inheritdoc/>
    public override string DescribeSizeDivisor() => Invariant(
        $"2^(levels − 1) for an improved-diffusion U-Net with {ChannelMult.Count} levels (ChannelMult); resize the images or use fewer levels");

    /// <summary>
    /// Throws a clear exception for an invalid shape: <see cref="ModelChannels"/> and every level width positive, at most
    /// 16384 and divisible by 32 (the group normalisation's groups); 1 to 16 levels; 1 to 64 residual blocks; heads that
    /// divide every attending width; <see cref="Dropout"/> in [0, 1); a positive finite <see cref="TimestepScale"/>;
    /// <see cref="TimestepMap"/> of at most 10^6 values in [0, 10^6].
    /// </summary>
    protected override void ValidateShape()
    {
        if (ModelChannels is < 2 or > MaxWidth || ModelChannels % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(ModelChannels), ModelChannels, Invariant($"ImprovedDiffusionUNetOptions.ModelChannels must be even (the time embedding is half cosines, half sines) and in [2, {MaxWidth}]; got {ModelChannels}."));
        }

        if (ChannelMult is null || ChannelMult.Count is < 1 or > MaxLevels || ChannelMult.Any(m => !double.IsFinite(m) || m <= 0 || m * ModelChannels > MaxWidth))
        {
            throw new ArgumentOutOfRangeException(
                nameof(ChannelMult), Invariant($"ImprovedDiffusionUNetOptions.ChannelMult must hold 1 to {MaxLevels} positive multipliers whose widths (× ModelChannels {ModelChannels}) are at most {MaxWidth}; got ({string.Join(", ", ChannelMult ?? Array.Empty<double>())})."));
        }

        var widths = LevelWidths;
        if (widths.Any(w => w < NormGroups || w % NormGroups != 0))
        {
            throw new ArgumentOutOfRangeException(
                nameof(ChannelMult), Invariant($"Every level width of an improved-diffusion U-Net must be a positive multiple of {NormGroups} (its group normalisation has {NormGroups} groups); ModelChannels {ModelChannels} × ChannelMult ({string.Join(", ", ChannelMult)}) gives ({string.Join(", ", widths)})."));
        }

        if (ResBlocks is < 1 or > MaxResBlocks)
        {
            throw new ArgumentOutOfRangeException(nameof(ResBlocks), ResBlocks, Invariant($"ImprovedDiffusionUNetOptions.ResBlocks must be in [1, {MaxResBlocks}]; got {ResBlocks}."));
        }

        if (AttentionDownsampleRates is null || AttentionDownsampleRates.Any(r => r < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(AttentionDownsampleRates), "ImprovedDiffusionUNetOptions.AttentionDownsampleRates must hold positive downsampling rates (1 = the input's resolution).");
        }

        if (Heads is < 1 or > MaxHeads || HeadChannels is < 1 or > MaxWidth || UpsampleHeads is < 1 or > MaxHeads)
        {
            throw new ArgumentOutOfRangeException(nameof(Heads), Invariant($"ImprovedDiffusionUNetOptions.Heads and UpsampleHeads must be in [1, {MaxHeads}] and HeadChannels in [1, {MaxWidth}]; got {Heads}, {UpsampleHeads}, {HeadChannels}."));
        }

        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout))
        {
            throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "ImprovedDiffusionUNetOptions.Dropout must be in [0, 1).");
        }

        if (!double.IsFinite(TimestepScale) || TimestepScale <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TimestepScale), TimestepScale, "ImprovedDiffusionUNetOptions.TimestepScale must be positive and finite.");
        }

        if (TimestepMap is not null && (TimestepMap.Count is < 1 or > MaxTimestep || TimestepMap.Any(t => t is < 0 or > MaxTimestep)))
        {
            throw new ArgumentOutOfRangeException(nameof(TimestepMap), Invariant($"ImprovedDiffusionUNetOptions.TimestepMap must hold 1 to {MaxTimestep} timesteps, each in [0, {MaxTimestep}]."));
        }

        foreach (var block in Blueprint().Where(b => b.Kind == BlockKind.Attention))
        {
            if (block.Heads < 1 || block.Output % block.Heads != 0)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(Heads), Invariant($"An attention block of width {block.Output} cannot be split into {block.Heads} heads (Heads {Heads}, HeadChannels {HeadChannels}, UpsampleHeads {UpsampleHeads}): the width must divide evenly."));
            }
        }
    }

    /// <summary>
    /// The network's blocks in the order of their parameter names: each with its place (<c>input_blocks.i.j</c>,
    /// <c>middle_block.j</c>, <c>output_blocks.i.j</c>), kind, widths and heads. The network and
    /// <see cref="CountParameters"/> are both built from it.
    /// </summary>
    /// <returns>The blocks.</returns>
    internal IReadOnlyList<Block> Blueprint()
    {
        var blocks = new List<Block>();
        int time = ModelChannels * 4;
        var widths = LevelWidths;
        int ch = widths[0];
        int upsampleHeads = UpsampleHeads ?? Heads;
        blocks.Add(new Block(BlockKind.Input, -1, 0, Channels, ch, 0, Parameters: (ModelChannels * (long)time) + time + ((long)time * time) + time));
        blocks.Add(new Block(BlockKind.Convolution, 0, 0, Channels, ch, 0, Conv(Channels, ch, 3)));
        var skips = new Stack<int>();
        skips.Push(ch);
        int ds = 1, index = 1;
        for (int level = 0; level < widths.Count; level++)
        {
            for (int r = 0; r < ResBlocks; r++)
            {
                blocks.Add(Res(index, 0, ch, widths[level], time));
                ch = widths[level];
                if (AttentionDownsampleRates.Contains(ds))
                {
                    blocks.Add(Attention(index, 1, ch, HeadsFor(ch, Heads)));
                }

                skips.Push(ch);
                index++;
            }

            if (level != widths.Count - 1)
            {
                blocks.Add(ResBlockUpDown
                    ? Res(index, 0, ch, ch, time) with { Kind = BlockKind.DownResBlock }
                    : new Block(BlockKind.Downsample, index, 0, ch, ch, 0, ConvResample ? Conv(ch, ch, 3) : 0));
                skips.Push(ch);
                index++;
                ds *= 2;
            }
        }

        blocks.Add(Res(-1, 0, ch, ch, time) with { Place = Place.Middle });
        blocks.Add(Attention(-1, 1, ch, HeadsFor(ch, Heads)) with { Place = Place.Middle });
        blocks.Add(Res(-1, 2, ch, ch, time) with { Place = Place.Middle });

        index = 0;
        for (int level = widths.Count - 1; level >= 0; level--)
        {
            for (int i = 0; i <= ResBlocks; i++)
            {
                int position = 0;
                blocks.Add(Res(index, position++, ch + skips.Pop(), widths[level], time) with { Place = Place.Output });
                ch = widths[level];
                if (AttentionDownsampleRates.Contains(ds))
                {
                    blocks.Add(Attention(index, position++, ch, HeadsFor(ch, upsampleHeads)) with { Place = Place.Output });
                }

                if (level > 0 && i == ResBlocks)
                {
                    blocks.Add(ResBlockUpDown
                        ? Res(index, position, ch, ch, time) with { Kind = BlockKind.UpResBlock, Place = Place.Output }
                        : new Block(BlockKind.Upsample, index, position, ch, ch, 0, ConvResample ? Conv(ch, ch, 3) : 0) with { Place = Place.Output });
                    ds /= 2;
                }

                index++;
            }
        }

        int outputs = Channels * (LearnedVariance ? 2 : 1);
        long labels = ClassCount * (long)time;
        blocks.Add(new Block(BlockKind.Output, -1, 0, ch, outputs, 0, (2L * ch) + Conv(widths[0], outputs, 3) + labels));
        return blocks;
    }

    private int HeadsFor(int width, int heads) => HeadChannels is int perHead ? (width % perHead == 0 ? width / perHead : 0) : heads;

    private Block Res(int index, int position, int input, int output, int time)
    {
        long parameters = (2L * input) + Conv(input, output, 3) + ((long)time * output * (ScaleShiftNorm ? 2 : 1)) + (output * (ScaleShiftNorm ? 2L : 1L))
            + (2L * output) + Conv(output, output, 3) + (input != output ? Conv(input, output, 1) : 0);
        return new Block(BlockKind.ResBlock, index, position, input, output, 0, parameters);
    }

    private static Block Attention(int index, int position, int width, int heads) =>
        new(BlockKind.Attention, index, position, width, width, heads, (2L * width) + ((long)width * width * 3) + (3L * width) + ((long)width * width) + width);

    private static long Conv(long input, long output, long kernel) => (input * output * kernel * kernel) + output;

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);

    /// <summary>What a block of the blueprint is.</summary>
    internal enum BlockKind
    {
        /// <summary>The time embedding (its parameters only; no place).</summary>
        Input,

        /// <summary>The first 3×3 convolution, <c>input_blocks.0.0</c>.</summary>
        Convolution,

        /// <summary>A residual block.</summary>
        ResBlock,

        /// <summary>A residual block that halves the resolution.</summary>
        DownResBlock,

        /// <summary>A residual block that doubles the resolution.</summary>
        UpResBlock,

        /// <summary>An attention block.</summary>
        Attention,

        /// <summary>A strided convolution or average pooling.</summary>
        Downsample,

        /// <summary>Nearest upsampling, then a convolution.</summary>
        Upsample,

        /// <summary>The output normalisation and convolution (and the label embedding's parameters).</summary>
        Output,
    }

    /// <summary>Which list a block belongs to.</summary>
    internal enum Place
    {
        /// <summary><c>input_blocks</c>.</summary>
        Input,

        /// <summary><c>middle_block</c>.</summary>
        Middle,

        /// <summary><c>output_blocks</c>.</summary>
        Output,
    }

    /// <summary>One block: its kind, its place (<c>Index</c> in the list, <c>Position</c> in the step), widths, heads and parameter count.</summary>
    internal sealed record Block(BlockKind Kind, int Index, int Position, int Input, int Output, int Heads, long Parameters)
    {
        /// <summary>Gets the list the block belongs to.</summary>
        public Place Place { get; init; } = Place.Input;
    }
}
