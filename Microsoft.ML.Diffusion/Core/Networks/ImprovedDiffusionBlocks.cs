using System;
using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

// The blocks of improved-diffusion's UNetModel. Their parameter names are a file-format contract: they are the names of
// the reference's state dict (positions in its nn.Sequential containers become [ComponentName]s), so that a checkpoint
// written by it loads without renaming.

/// <summary>Group normalisation with 32 groups computed in float32 (their <c>GroupNorm32</c>).</summary>
internal static class GroupNorm32
{
    private const double Epsilon = 1e-5;

    public static GroupNorm Create(long channels) => GroupNorms.Create(ImprovedDiffusionUNetOptions.NormGroups, channels, Epsilon);

    public static Tensor Apply(GroupNorm norm, Tensor x)
    {
        if (x.dtype == ScalarType.Float32)
        {
            return norm.call(x);
        }

        // A 16-bit copy of the network: normalise in float32 with float32 copies of the affine parameters.
        using var scope = NewDisposeScope();
        var normalized = nn.functional.group_norm(
            x.to(ScalarType.Float32), ImprovedDiffusionUNetOptions.NormGroups, norm.weight!.to(ScalarType.Float32), norm.bias!.to(ScalarType.Float32), Epsilon);
        return normalized.to(x.dtype).MoveToOuterDisposeScope();
    }
}

/// <summary>Normalise, SiLU, 3×3 convolution: <c>in_layers</c> of a residual block and <c>out</c> of the network (Sequential indices 0 and 2).</summary>
internal sealed class NormSiluConv : nn.Module
{
    [ComponentName(Name = "0")]
    private readonly GroupNorm norm;

    [ComponentName(Name = "2")]
    private readonly Conv2d conv;

    public NormSiluConv(long input, long output, bool zero)
        : base(nameof(NormSiluConv))
    {
        norm = GroupNorm32.Create(input);
        conv = nn.Conv2d(input, output, 3, padding: 1);
        if (zero)
        {
            ZeroInit.Apply(conv);
        }

        RegisterComponents();
    }

    public Tensor NormAct(Tensor x)
    {
        using var normalized = GroupNorm32.Apply(norm, x);
        return nn.functional.silu(normalized);
    }

    public Tensor Conv(Tensor x) => conv.call(x);
}

/// <summary>Normalise, (scale and shift,) SiLU, dropout, zero-initialised 3×3 convolution: <c>out_layers</c> (indices 0 and 3).</summary>
internal sealed class OutLayers : nn.Module
{
    [ComponentName(Name = "0")]
    private readonly GroupNorm norm;

    [ComponentName(Name = "2")]
    private readonly Dropout dropout;

    [ComponentName(Name = "3")]
    private readonly Conv2d conv;

    public OutLayers(long channels, double dropout)
        : base(nameof(OutLayers))
    {
        norm = GroupNorm32.Create(channels);
        this.dropout = nn.Dropout(dropout);
        conv = nn.Conv2d(channels, channels, 3, padding: 1);
        ZeroInit.Apply(conv);
        RegisterComponents();
    }

    public Tensor Norm(Tensor x) => GroupNorm32.Apply(norm, x);

    public Tensor Rest(Tensor x)
    {
        using var activated = nn.functional.silu(x);
        using var dropped = dropout.call(activated);
        return conv.call(dropped);
    }
}

/// <summary>SiLU then a linear layer: <c>emb_layers</c> (index 1) of a residual block.</summary>
internal sealed class EmbLayers : nn.Module
{
    [ComponentName(Name = "1")]
    private readonly Linear linear;

    public EmbLayers(long input, long output)
        : base(nameof(EmbLayers))
    {
        linear = nn.Linear(input, output);
        RegisterComponents();
    }

    public Tensor Forward(Tensor emb)
    {
        using var activated = nn.functional.silu(emb);
        return linear.call(activated);
    }
}

/// <summary>Linear, SiLU, linear: the time embedding's MLP, <c>time_embed</c> (indices 0 and 2).</summary>
internal sealed class TimeEmbed : nn.Module
{
    [ComponentName(Name = "0")]
    private readonly Linear first;

    [ComponentName(Name = "2")]
    private readonly Linear second;

    public TimeEmbed(long channels, long time)
        : base(nameof(TimeEmbed))
    {
        first = nn.Linear(channels, time);
        second = nn.Linear(time, time);
        RegisterComponents();
    }

    public Tensor Forward(Tensor embedding)
    {
        using var scope = NewDisposeScope();
        return second.call(nn.functional.silu(first.call(embedding))).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A residual block conditioned on the time embedding (their <c>ResBlock</c>): in_layers (norm, SiLU, conv), plus the
/// embedding (added, or as scale and shift of the second norm), out_layers (norm, SiLU, dropout, conv), plus the input
/// (through a 1×1 convolution when the width changes). With up/down it resamples after the first SiLU (guided-diffusion).
/// </summary>
internal sealed class ImprovedResBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly NormSiluConv in_layers;
    private readonly EmbLayers emb_layers;
    private readonly OutLayers out_layers;
    private readonly Conv2d? skip_connection;
    private readonly bool scaleShift;
    private readonly int resample;

    // resample: −1 halves the resolution (average pooling), +1 doubles it (nearest), 0 keeps it.
    public ImprovedResBlock(long input, long output, long time, double dropout, bool scaleShift, int resample)
        : base(nameof(ImprovedResBlock))
    {
        this.scaleShift = scaleShift;
        this.resample = resample;
        in_layers = new NormSiluConv(input, output, zero: false);
        emb_layers = new EmbLayers(time, scaleShift ? 2 * output : output);
        out_layers = new OutLayers(output, dropout);
        skip_connection = input != output ? nn.Conv2d(input, output, 1) : null;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor emb)
    {
        using var scope = NewDisposeScope();
        var h = in_layers.NormAct(x);
        if (resample != 0)
        {
            h = Resampling.Apply(h, resample);
            x = Resampling.Apply(x, resample);
        }

        h = in_layers.Conv(h);
        var embOut = emb_layers.Forward(emb).to(h.dtype).unsqueeze(-1).unsqueeze(-1);
        if (scaleShift)
        {
            var parts = embOut.chunk(2, 1);
            h = (out_layers.Norm(h) * parts[0].Plus(Scalars.One)).Plus(parts[1]);
            h = out_layers.Rest(h);
        }
        else
        {
            h = out_layers.Rest(out_layers.Norm(h.Plus(embOut)));
        }

        var skip = skip_connection is null ? x : skip_connection.call(x);
        return skip.Plus(h).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Self-attention over the pixels (their <c>AttentionBlock</c>): a group norm, a fused q/k/v 1×1 convolution (Conv1d over
/// the flattened pixels), softmax(qᵀk/√c) per head, a zero-initialised output projection, plus the input.
/// </summary>
internal sealed class ImprovedAttentionBlock : nn.Module<Tensor, Tensor>
{
    private readonly GroupNorm norm;
    private readonly Conv1d qkv;
    private readonly Conv1d proj_out;
    private readonly int heads;
    private readonly bool newOrder;
    private readonly Scalar scale;

    public ImprovedAttentionBlock(long channels, int heads, bool newOrder)
        : base(nameof(ImprovedAttentionBlock))
    {
        this.heads = heads;
        this.newOrder = newOrder;
        long perHead = channels / heads;

        // q and k are each scaled by c^(−1/4) before their product, as the reference does (steadier in 16 bits).
        scale = (1.0 / Math.Sqrt(Math.Sqrt(perHead))).ToScalar();
        norm = GroupNorm32.Create(channels);
        qkv = nn.Conv1d(channels, channels * 3, 1);
        proj_out = nn.Conv1d(channels, channels, 1);
        ZeroInit.Apply(proj_out);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], length = x.shape[2] * x.shape[3];
        long perHead = c / heads;
        var flat = x.reshape(b, c, length);
        var fused = qkv.call(GroupNorm32.Apply(norm, flat)); // b × 3c × T
        Tensor q, k, v;
        if (newOrder)
        {
            var parts = fused.chunk(3, 1);
            q = parts[0].reshape(b * heads, perHead, length);
            k = parts[1].reshape(b * heads, perHead, length);
            v = parts[2].reshape(b * heads, perHead, length);
        }
        else
        {
            var parts = fused.reshape(b * heads, 3 * perHead, length).split(perHead, 1);
            (q, k, v) = (parts[0], parts[1], parts[2]);
        }

        var weight = matmul((q * scale).transpose(1, 2), k * scale); // (b·heads) × T × T
        weight = weight.to(ScalarType.Float32).softmax(-1).to(weight.dtype);
        var attended = matmul(v, weight.transpose(1, 2)).reshape(b, c, length);
        return flat.Plus(proj_out.call(attended)).reshape(x.shape).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            scale.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>Halves the resolution: a 3×3 convolution of stride 2 (<c>op</c>), or 2×2 average pooling.</summary>
internal sealed class ImprovedDownsample : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d? op;

    public ImprovedDownsample(long channels, bool convolution)
        : base(nameof(ImprovedDownsample))
    {
        op = convolution ? nn.Conv2d(channels, channels, 3, stride: 2, padding: 1) : null;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => op is null ? Resampling.Apply(x, -1) : op.call(x);
}

/// <summary>Doubles the resolution: nearest ×2, then a 3×3 convolution (<c>conv</c>) when asked.</summary>
internal sealed class ImprovedUpsample : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d? conv;

    public ImprovedUpsample(long channels, bool convolution)
        : base(nameof(ImprovedUpsample))
    {
        conv = convolution ? nn.Conv2d(channels, channels, 3, padding: 1) : null;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (conv is null)
        {
            return Resampling.Apply(x, 1);
        }

        using var upsampled = Resampling.Apply(x, 1);
        return conv.call(upsampled);
    }
}

/// <summary>
/// A step of the network (their <c>TimestepEmbedSequential</c>): its layers, named by position, each given the time
/// embedding if it takes one.
/// </summary>
internal sealed class TimestepSequence : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly List<nn.Module> layers = new();

    public TimestepSequence(IEnumerable<nn.Module> children)
        : base(nameof(TimestepSequence))
    {
        foreach (var child in children)
        {
            register_module(layers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), child);
            layers.Add(child);
        }
    }

    public override Tensor forward(Tensor x, Tensor emb)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var layer in layers)
        {
            h = layer switch
            {
                nn.Module<Tensor, Tensor, Tensor> conditioned => conditioned.call(h, emb),
                nn.Module<Tensor, Tensor> plain => plain.call(h),
                _ => throw new InvalidOperationException($"A layer of type {layer.GetType().Name} cannot run in a timestep sequence."),
            };
        }

        return (ReferenceEquals(h, x) ? h.alias() : h).MoveToOuterDisposeScope();
    }
}

/// <summary>Parameter-free resampling: average pooling 2×2 (−1) or nearest ×2 (+1).</summary>
internal static class Resampling
{
    private static readonly long[] Two = { 2, 2 };
    private static readonly double[] Double = { 2.0, 2.0 };

    public static Tensor Apply(Tensor x, int direction) => direction < 0
        ? nn.functional.avg_pool2d(x, Two, Two)
        : nn.functional.interpolate(x, scale_factor: Double, mode: InterpolationMode.Nearest);
}

/// <summary>Zeroes a layer's weights and bias (their <c>zero_module</c>): residual branches start as the identity.</summary>
internal static class ZeroInit
{
    public static void Apply(nn.Module layer)
    {
        using (no_grad())
        {
            foreach (var parameter in layer.parameters())
            {
                parameter.zero_();
            }
        }
    }
}
