using System;
using System.Globalization;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The kind and shape of a <see cref="Denoiser"/>: what model files and checkpoints store to rebuild the network.
/// <see cref="UNetOptions"/> is the library's convolutional kind; other kinds register with <see cref="DenoiserKinds"/>.
/// </summary>
/// <remarks>
/// A kind owns its rules: <see cref="Validate"/> checks the settings every kind shares, then the kind's own
/// <see cref="ValidateShape"/> (its widths, depths and heads, bounded so that a model file cannot ask for an absurd
/// allocation), and <see cref="CountParameters"/> says how large it will be before it is built.
/// </remarks>
[JsonConverter(typeof(DenoiserOptionsJsonConverter))]
public abstract class DenoiserOptions
{
    /// <summary>Gets the kind's name, stored in model files (for example "UNet" or "DiT").</summary>
    [JsonIgnore]
    public abstract string Kind { get; }

    /// <summary>The largest number of image channels.</summary>
    public const int MaxChannels = 64;

    /// <summary>The largest number of classes.</summary>
    public const int MaxClassCount = 1_000_000;

    /// <summary>Gets or sets the image channels (1 grayscale, 3 RGB). Default 1.</summary>
    public int Channels { get; set; } = 1;

    /// <summary>Gets or sets a value indicating whether the network also predicts the variance interpolation (doubles the output channels).</summary>
    public bool LearnedVariance { get; set; }

    /// <summary>
    /// Gets or sets the number of classes for a class-conditional model, or 0 for none. The label embedding has one more
    /// row, index <see cref="ClassCount"/>, meaning "no label" (for classifier-free guidance).
    /// </summary>
    public int ClassCount { get; set; }

    /// <summary>Gets the factor every image side must divide by.</summary>
    public abstract int SizeDivisor { get; }

    /// <summary>Builds a network of this shape with fresh weights (from torch's global generator), on the CPU.</summary>
    /// <returns>The network.</returns>
    public abstract Denoiser CreateDenoiser();

    /// <summary>Returns a deep copy.</summary>
    /// <returns>The copy.</returns>
    public abstract DenoiserOptions Clone();

    /// <summary>
    /// Throws a clear exception for an invalid combination: <see cref="Channels"/> in [1, <see cref="MaxChannels"/>] and
    /// <see cref="ClassCount"/> in [0, <see cref="MaxClassCount"/>], then the kind's own limits (<see cref="ValidateShape"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        string type = GetType().Name;
        if (Channels is < 1 or > MaxChannels)
        {
            throw new ArgumentOutOfRangeException(
                nameof(Channels), Channels, string.Create(CultureInfo.InvariantCulture, $"{type}.Channels must be positive and at most {MaxChannels}; got {Channels} channels."));
        }

        if (ClassCount is < 0 or > MaxClassCount)
        {
            throw new ArgumentOutOfRangeException(
                nameof(ClassCount), ClassCount, string.Create(CultureInfo.InvariantCulture, $"{type}.ClassCount must be 0 (unconditional) or a number of classes up to {MaxClassCount}; got {ClassCount} classes."));
        }

        ValidateShape();
    }

    /// <summary>
    /// Says, for messages, why image sides must divide by <see cref="SizeDivisor"/> and what to do about it (for example
    /// "the patch size; resize the images or use a smaller patch").
    /// </summary>
    /// <returns>The reason and the remedy.</returns>
    public virtual string DescribeSizeDivisor() => $"the {Kind}'s size divisor; resize the images";

    /// <summary>
    /// Throws a clear exception for an invalid shape: the kind's own rules and limits (the shared settings are checked
    /// already). Bound every width and count, so that <see cref="CountParameters"/> cannot overflow.
    /// </summary>
    protected abstract void ValidateShape();

    /// <summary>
    /// The number of parameters the network will have, computed without building it, or null when the kind cannot say.
    /// Model files are checked against it before anything is allocated.
    /// </summary>
    /// <returns>The count, or null.</returns>
    public virtual long? CountParameters() => null;
}
