using System;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// A network that the diffusion maths, the samplers, training and model files can use: it maps noisy images x_t,
/// their timesteps and (for a class-conditional network) labels to the objective's prediction — ε, x₀ or v, followed
/// by the variance interpolation value when the variance is learned. <see cref="UNet"/> is the
/// library's convolutional implementation; any <see cref="nn.Module"/> that derives from this class can be trained and sampled.
/// </summary>
public abstract class Denoiser : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Initializes a new instance of the <see cref="Denoiser"/> class.</summary>
    /// <param name="name">The module's name.</param>
    protected Denoiser(string name)
        : base(name)
    {
    }

    /// <summary>Gets the settings the network was built from (its kind and shape; stored in model files).</summary>
    public abstract DenoiserOptions Options { get; }

    /// <summary>Gets the image channels of the input.</summary>
    public int Channels => Options.Channels;

    /// <summary>Gets the number of output channels: the image channels, doubled when the variance is learned.</summary>
    public int OutputChannels => Options.Channels * (Options.LearnedVariance ? 2 : 1);

    /// <summary>Gets the number of classes of a class-conditional network (label <see cref="ClassCount"/> means "no label"), or 0.</summary>
    public int ClassCount => Options.ClassCount;

    /// <summary>Gets a value indicating whether the output also holds the variance interpolation value.</summary>
    public bool LearnedVariance => Options.LearnedVariance;

    /// <summary>Gets the factor every image side must divide by.</summary>
    public int SizeDivisor => Options.SizeDivisor;

    /// <summary>Gets the number of trainable parameters.</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>Predicts from a batch of noisy images and their timesteps, unconditionally.</summary>
    /// <param name="x">Images N×C×H×W.</param>
    /// <param name="time">Timesteps, a vector of N integers (0-based).</param>
    /// <returns>N×<see cref="OutputChannels"/>×H×W.</returns>
    public override Tensor forward(Tensor x, Tensor time) => forward(x, time, null);

    /// <summary>Predicts from a batch of noisy images, their timesteps and (for a class-conditional network) labels.</summary>
    /// <param name="x">Images N×C×H×W, sides divisible by <see cref="SizeDivisor"/>.</param>
    /// <param name="time">Timesteps, a vector of N integers (0-based).</param>
    /// <param name="classes">Labels in [0, ClassCount] (ClassCount = no label), a vector of N integers; null = no label.</param>
    /// <returns>N×<see cref="OutputChannels"/>×H×W.</returns>
    public abstract Tensor forward(Tensor x, Tensor time, Tensor? classes);

    /// <summary>
    /// The rows of a label table that has exactly <see cref="ClassCount"/> rows (as imported networks have): label
    /// <see cref="ClassCount"/> ("no label", used by classifier-free guidance) gives a zero row, so it adds nothing.
    /// </summary>
    /// <param name="table">The ClassCount×D embedding weights.</param>
    /// <param name="classes">Labels in [0, ClassCount], a vector of N integers.</param>
    /// <returns>N×D rows (zero for "no label").</returns>
    protected Tensor LabelRowsWithoutNullClass(Tensor table, Tensor classes)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(classes);
        using var scope = NewDisposeScope();
        using Scalar lastRow = (ClassCount - 1).ToScalar(), count = ClassCount.ToScalar();
        var labels = classes.to(ScalarType.Int64);
        var rows = table[TensorIndex.Tensor(labels.clamp_max(lastRow))];
        return (rows * labels.lt(count).unsqueeze(1).to(rows.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Throws a clear exception unless <paramref name="x"/> is N×<see cref="Channels"/>×H×W with sides divisible by <see cref="SizeDivisor"/>.</summary>
    /// <param name="x">The input images.</param>
    /// <param name="network">The network's name in messages, for example "U-Net".</param>
    /// <param name="divisorReason">Why the sides must divide, for example "the patch size".</param>
    protected void CheckInput(Tensor x, string network, string divisorReason)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 4 || x.shape[1] != Channels)
        {
            throw new ArgumentException($"The {network} expects images N×{Channels}×H×W; got shape [{string.Join(", ", x.shape)}].", nameof(x));
        }

        int divisor = SizeDivisor;
        if (x.shape[2] % divisor != 0 || x.shape[3] % divisor != 0)
        {
            throw new ArgumentException($"Image height and width must be divisible by {divisor} ({divisorReason}); got {x.shape[2]}×{x.shape[3]}.", nameof(x));
        }
    }
}
