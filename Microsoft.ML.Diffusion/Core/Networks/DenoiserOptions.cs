using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The kind and shape of a <see cref="Denoiser"/>: what model files and checkpoints store to rebuild the network.
/// <see cref="UNetOptions"/> is the library's convolutional kind; other kinds register with <see cref="DenoiserKinds"/>.
/// </summary>
[JsonConverter(typeof(DenoiserOptionsJsonConverter))]
public abstract class DenoiserOptions
{
    /// <summary>Gets the kind's name, stored in model files (for example "UNet" or "DiT").</summary>
    [JsonIgnore]
    public abstract string Kind { get; }

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

    /// <summary>Throws a clear exception for an invalid combination.</summary>
    public abstract void Validate();

    /// <summary>
    /// The number of parameters the network will have, computed without building it, or null when the kind cannot say.
    /// Model files are checked against it before anything is allocated.
    /// </summary>
    /// <returns>The count, or null.</returns>
    public virtual long? CountParameters() => null;
}
