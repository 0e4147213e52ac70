using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// Shape of <see cref="DiffusersUNet"/>, the U-Net of Hugging Face diffusers' <c>UNet2DModel</c> (the network of its DDPM
/// and DDIM pipelines, e.g. <c>google/ddpm-cifar10-32</c>): each property is one key of the model's <c>config.json</c>.
/// </summary>
/// <remarks>
/// <para>Config keys and their properties: <c>in_channels</c> = <see cref="DenoiserOptions.Channels"/>; <c>out_channels</c>
/// = Channels, or 2·Channels for <see cref="DenoiserOptions.LearnedVariance"/>; <c>num_class_embeds</c> =
/// <see cref="DenoiserOptions.ClassCount"/>; <c>block_out_channels</c>, <c>down_block_types</c>, <c>up_block_types</c>,
/// <c>mid_block_type</c>, <c>layers_per_block</c>, <c>attention_head_dim</c>, <c>norm_num_groups</c>,
/// <c>attn_norm_num_groups</c>, <c>norm_eps</c>, <c>flip_sin_to_cos</c>, <c>freq_shift</c>, <c>time_embedding_dim</c>,
/// <c>center_input_sample</c>, <c>downsample_padding</c>, <c>mid_block_scale_factor</c>, <c>add_attention</c>,
/// <c>dropout</c>: the properties of the same name.</para>
/// <para>Supported block types: <c>DownBlock2D</c>, <c>AttnDownBlock2D</c>, <c>UpBlock2D</c>, <c>AttnUpBlock2D</c> and the
/// <c>UNetMidBlock2D</c> (or none); positional time embedding, SiLU, the default time-scale-shift, convolutional
/// resampling. The importer refuses other configurations by key and value.</para>
/// <para>The class embedding has exactly <see cref="DenoiserOptions.ClassCount"/> rows, as diffusers' has: label
/// ClassCount ("no label", for guidance) adds no class embedding.</para>
/// </remarks>
public sealed class DiffusersUNetOptions : DenoiserOptions
{
    /// <summary>The kind's name in model files.</summary>
    public const string KindName = "DiffusersUNet2D";

    /// <summary>diffusers' plain down block (<c>DownBlock2D</c>).</summary>
    public const string DownBlock = "DownBlock2D";

    /// <summary>diffusers' down block with self-attention after each ResNet (<c>AttnDownBlock2D</c>).</summary>
    public const string AttentionDownBlock = "AttnDownBlock2D";

    /// <summary>diffusers' plain up block (<c>UpBlock2D</c>).</summary>
    public const string UpBlock = "UpBlock2D";

    /// <summary>diffusers' up block with self-attention after each ResNet (<c>AttnUpBlock2D</c>).</summary>
    public const string AttentionUpBlock = "AttnUpBlock2D";

    /// <summary>diffusers' middle block: ResNet, attention, ResNet (<c>UNetMidBlock2D</c>).</summary>
    public const string MiddleBlock = "UNetMidBlock2D";

    // Each level halves the image: 14 levels need sides divisible by 2^13, the largest image side.
    private const int MaxLevels = 14;
    private const int MaxWidth = 16_384;
    private const int MaxLayers = 64;

    /// <inheritdoc/>
    public override string Kind => KindName;

    /// <summary>Gets or sets the width of each level (<c>block_out_channels</c>). Default (32, 64).</summary>
    public IReadOnlyList<int> BlockOutChannels { get; set; } = new[] { 32, 64 };

    /// <summary>Gets or sets the down block of each level, <c>DownBlock2D</c> or <c>AttnDownBlock2D</c> (<c>down_block_types</c>).</summary>
    public IReadOnlyList<string> DownBlockTypes { get; set; } = new[] { DownBlock, AttentionDownBlock };

    /// <summary>Gets or sets the up block of each level from the innermost out, <c>UpBlock2D</c> or <c>AttnUpBlock2D</c> (<c>up_block_types</c>).</summary>
    public IReadOnlyList<string> UpBlockTypes { get; set; } = new[] { AttentionUpBlock, UpBlock };

    /// <summary>Gets or sets a value indicating whether the U-Net has its middle block (<c>mid_block_type</c> <c>UNetMidBlock2D</c> rather than null). Default true.</summary>
    public bool MiddleBlockEnabled { get; set; } = true;

    /// <summary>Gets or sets the ResNet blocks per down block; up blocks have one more (<c>layers_per_block</c>). Default 2.</summary>
    public int LayersPerBlock { get; set; } = 2;

    /// <summary>Gets or sets the width of one attention head, or null for one head as wide as the block (<c>attention_head_dim</c>). Default 8.</summary>
    public int? AttentionHeadDim { get; set; } = 8;

    /// <summary>Gets or sets the groups of every group norm (<c>norm_num_groups</c>). Default 32.</summary>
    public int NormGroups { get; set; } = 32;

    /// <summary>Gets or sets the groups of the middle block's attention norm, or null for <see cref="NormGroups"/> (<c>attn_norm_num_groups</c>).</summary>
    public int? AttentionNormGroups { get; set; }

    /// <summary>Gets or sets ε of every group norm (<c>norm_eps</c>). Default 1e-5.</summary>
    public double NormEps { get; set; } = 1e-5;

    /// <summary>Gets or sets a value indicating whether the time embedding is (cos, sin) rather than (sin, cos) (<c>flip_sin_to_cos</c>). Default true.</summary>
    public bool FlipSinToCos { get; set; } = true;

    /// <summary>Gets or sets the frequency shift s of the time embedding, frequencies exp(−ln(10000)·i/(half − s)) (<c>freq_shift</c>). Default 0.</summary>
    public int FreqShift { get; set; }

    /// <summary>Gets or sets the width of the time embedding, or null for 4·BlockOutChannels[0] (<c>time_embedding_dim</c>).</summary>
    public int? TimeEmbeddingDim { get; set; }

    /// <summary>Gets or sets a value indicating whether the input is mapped x → 2x − 1 first (<c>center_input_sample</c>). Default false.</summary>
    public bool CenterInputSample { get; set; }

    /// <summary>Gets or sets the padding of the stride-2 downsampling convolutions; 0 pads one pixel right and bottom (<c>downsample_padding</c>). Default 1.</summary>
    public int DownsamplePadding { get; set; } = 1;

    /// <summary>Gets or sets the factor the middle block's residual sums are divided by (<c>mid_block_scale_factor</c>). Default 1.</summary>
    public double MidBlockScaleFactor { get; set; } = 1;

    /// <summary>Gets or sets a value indicating whether the middle block has its attention (<c>add_attention</c>). Default true.</summary>
    public bool AddAttention { get; set; } = true;

    /// <summary>Gets or sets the dropout probability inside the ResNet blocks (<c>dropout</c>). Default 0.</summary>
    public double Dropout { get; set; }

    /// <summary>Gets the number of resolution levels.</summary>
    public int Levels => BlockOutChannels?.Count ?? 0;

    /// <summary>Gets the width of the time embedding: <see cref="TimeEmbeddingDim"/> or 4·BlockOutChannels[0].</summary>
    public int TimeEmbeddingWidth => TimeEmbeddingDim ?? (BlockOutChannels[0] * 4);

    /// <summary>Gets the factor every image side must divide by: 2^(levels − 1).</summary>
    public override int SizeDivisor => 1 << Math.Max(0, Levels - 1);

    /// <inheritdoc/>
    public override Denoiser CreateDenoiser() => new DiffusersUNet(this);

    /// <inheritdoc/>
    public override long? CountParameters() => ParameterCount(this);

    /// <summary>Returns a deep copy.</summary>
    /// <returns>The copy.</returns>
    public override DiffusersUNetOptions Clone()
    {
        var copy = (DiffusersUNetOptions)MemberwiseClone();
        copy.BlockOutChannels = BlockOutChannels?.ToArray()!;
        copy.DownBlockTypes = DownBlockTypes?.ToArray()!;
        copy.UpBlockTypes = UpBlockTypes?.ToArray()!;
        return copy;
    }

    /// <inheritdoc/>
    public override string DescribeSizeDivisor() => Invariant($"2^(levels − 1) for a UNet2DModel with {Levels} levels (block_out_channels); resize the images");

    /// <summary>The attention heads and head width of a block <paramref name="width"/> channels wide (diffusers: heads = width / head_dim, rounded down).</summary>
    /// <param name="width">The block's channels.</param>
    /// <returns>The heads and the width of one.</returns>
    internal (int Heads, int HeadDim) AttentionShape(int width)
    {
        int headDim = AttentionHeadDim ?? width;
        return (width / headDim, headDim);
    }

    /// <summary>
    /// Throws a clear exception for an invalid shape: 1 to 14 levels of widths in [1, 16384], each divisible by
    /// <see cref="NormGroups"/>; as many down and up block types as levels, each one of the supported types; 1 to 64 layers
    /// per block; attention heads at least one per block; ε positive; dropout in [0, 1); padding 0 or 1.
    /// </summary>
    protected override void ValidateShape()
    {
        if (BlockOutChannels is null || BlockOutChannels.Count is < 1 or > MaxLevels || BlockOutChannels.Any(w => w is < 1 or > MaxWidth))
        {
            throw new ArgumentOutOfRangeException(
                nameof(BlockOutChannels), Invariant($"block_out_channels must hold 1 to {MaxLevels} widths in [1, {MaxWidth}]; got [{string.Join(", ", BlockOutChannels ?? Array.Empty<int>())}]."));
        }

        CheckTypes(DownBlockTypes, nameof(DownBlockTypes), "down_block_types", DownBlock, AttentionDownBlock);
        CheckTypes(UpBlockTypes, nameof(UpBlockTypes), "up_block_types", UpBlock, AttentionUpBlock);
        Check(LayersPerBlock is >= 1 and <= MaxLayers, nameof(LayersPerBlock), $"layers_per_block must be in [1, {MaxLayers}]; got {LayersPerBlock}.");
        Check(NormGroups >= 1 && BlockOutChannels.All(w => w % NormGroups == 0), nameof(NormGroups), $"norm_num_groups {NormGroups} must divide every width of block_out_channels [{string.Join(", ", BlockOutChannels)}].");
        Check(
            AttentionNormGroups is null || (AttentionNormGroups >= 1 && BlockOutChannels[^1] % AttentionNormGroups == 0),
            nameof(AttentionNormGroups),
            $"attn_norm_num_groups {AttentionNormGroups} must divide the middle block's width {BlockOutChannels[^1]}.");
        Check(
            AttentionHeadDim is null || (AttentionHeadDim >= 1 && BlockOutChannels.All(w => w / AttentionHeadDim >= 1)),
            nameof(AttentionHeadDim),
            $"attention_head_dim {AttentionHeadDim} must be positive and at most every width of block_out_channels [{string.Join(", ", BlockOutChannels)}] (heads = width / attention_head_dim).");
        Check(TimeEmbeddingDim is null || TimeEmbeddingDim is >= 1 and <= MaxWidth * 4, nameof(TimeEmbeddingDim), $"time_embedding_dim {TimeEmbeddingDim} must be in [1, {MaxWidth * 4}].");
        Check(BlockOutChannels[0] >= 2, nameof(BlockOutChannels), $"block_out_channels[0] {BlockOutChannels[0]} is the width of the sinusoidal time embedding: it must be at least 2.");
        Check(FreqShift < BlockOutChannels[0] / 2, nameof(FreqShift), $"freq_shift {FreqShift} must be below half of block_out_channels[0] ({BlockOutChannels[0] / 2}).");
        Check(double.IsFinite(NormEps) && NormEps > 0, nameof(NormEps), $"norm_eps {NormEps} must be positive.");
        Check(double.IsFinite(MidBlockScaleFactor) && MidBlockScaleFactor > 0, nameof(MidBlockScaleFactor), $"mid_block_scale_factor {MidBlockScaleFactor} must be positive.");
        Check(Dropout is >= 0 and < 1, nameof(Dropout), $"dropout {Dropout} must be in [0, 1).");
        Check(DownsamplePadding is 0 or 1, nameof(DownsamplePadding), $"downsample_padding {DownsamplePadding} must be 0 or 1.");
    }

    private void CheckTypes(IReadOnlyList<string>? types, string property, string key, string plain, string attention)
    {
        if (types is null || types.Count != Levels)
        {
            throw new ArgumentOutOfRangeException(property, Invariant($"{key} must name one block per level of block_out_channels ({Levels}); got {types?.Count ?? 0}."));
        }

        foreach (var type in types)
        {
            if (type != plain && type != attention)
            {
                throw new ArgumentOutOfRangeException(property, Invariant($"{key} holds '{type}', which is not supported: use {plain} or {attention}."));
            }
        }
    }

    private static void Check(bool condition, string name, FormattableString message)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, Invariant(message));
        }
    }

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The number of parameters <c>new DiffusersUNet(options)</c> has, computed without building it (a test pins it against
    /// <see cref="Denoiser.ParameterCount"/>). The shape is validated first, so no product overflows.
    /// </summary>
    private static long ParameterCount(DiffusersUNetOptions options)
    {
        long time = options.TimeEmbeddingWidth;
        long first = options.BlockOutChannels[0];
        static long Conv(long input, long output, long kernel) => (input * output * kernel * kernel) + output;
        static long Linear(long input, long output) => (input * output) + output;
        long Resnet(long input, long output) =>
            (2 * input) + Conv(input, output, 3) + Linear(time, output) + (2 * output) + Conv(output, output, 3) + (input != output ? Conv(input, output, 1) : 0);
        long Attention(long width)
        {
            var (heads, headDim) = options.AttentionShape((int)width);
            long inner = (long)heads * headDim;
            return (2 * width) + (3 * Linear(width, inner)) + Linear(inner, width);
        }

        long total = Conv(options.Channels, first, 3) + Linear(first, time) + Linear(time, time) + ((long)options.ClassCount * time);
        var widths = options.BlockOutChannels;
        int levels = widths.Count;
        long output = first;
        for (int i = 0; i < levels; i++)
        {
            long input = output;
            output = widths[i];
            bool attention = options.DownBlockTypes[i] == AttentionDownBlock;
            for (int j = 0; j < options.LayersPerBlock; j++)
            {
                total += Resnet(j == 0 ? input : output, output) + (attention ? Attention(output) : 0);
            }

            total += i < levels - 1 ? Conv(output, output, 3) : 0;
        }

        if (options.MiddleBlockEnabled)
        {
            long middle = widths[^1];
            total += (2 * Resnet(middle, middle)) + (options.AddAttention ? Attention(middle) : 0);
        }

        long previous = widths[^1];
        for (int i = 0; i < levels; i++)
        {
            long width = widths[levels - 1 - i];
            long skipWidth = widths[Math.Max(0, levels - 2 - i)];
            bool attention = options.UpBlockTypes[i] == AttentionUpBlock;
            for (int j = 0; j <= options.LayersPerBlock; j++)
            {
                long skip = j == options.LayersPerBlock ? skipWidth : width;
                long input = j == 0 ? previous : width;
                total += Resnet(input + skip, width) + (attention ? Attention(width) : 0);
            }

            total += i < levels - 1 ? Conv(width, width, 3) : 0;
            previous = width;
        }

        total += (2 * first) + Conv(first, options.Channels * (options.LearnedVariance ? 2L : 1L), 3);
        return total;
    }
}
