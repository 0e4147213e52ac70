using System;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// What an edit starts from: image-to-image (SDEdit, Meng et al. 2022: noise the image to <see cref="Strength"/>, then
/// denoise) and inpainting (keep the pixels where <see cref="Mask"/> is 1 at every step, regenerate the rest; with
/// <see cref="Resampling"/> &gt; 1, RePaint's resampling, Lugmayr et al. 2022). Pass it to
/// <see cref="SamplingLoop.Sample"/>.
/// </summary>
public sealed class ImageEdit
{
    private double strength = 1.0;
    private int resampling = 1;

    /// <summary>Initializes a new instance of the <see cref="ImageEdit"/> class.</summary>
    /// <param name="images">The images to edit, N×C×H×W in model space [−1, 1], one per seed.</param>
    /// <param name="mask">Null for image-to-image; else N×1×H×W or N×C×H×W, 1 where a pixel is kept, 0 where it is regenerated.</param>
    public ImageEdit(Tensor images, Tensor? mask = null)
    {
        Images = images ?? throw new ArgumentNullException(nameof(images));
        Mask = mask;
    }

    /// <summary>Gets the images to edit.</summary>
    public Tensor Images { get; }

    /// <summary>Gets the mask of kept pixels (1 = keep), or null for image-to-image.</summary>
    public Tensor? Mask { get; }

    /// <summary>
    /// Gets or sets s ∈ (0, 1]: the chain starts at timestep round(s·(T − 1)) from the image noised to it (the sampler's
    /// later steps only). Small s keeps the image close; 1 starts from pure noise. Default 1.
    /// </summary>
    public double Strength
    {
        get => strength;
        set => strength = value is > 0 and <= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "The strength must be in (0, 1].");
    }

    /// <summary>Gets or sets RePaint's U: each step is done U times, going back one step with fresh noise in between (1 = none). Default 1.</summary>
    public int Resampling
    {
        get => resampling;
        set => resampling = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "Resampling must be at least 1.");
    }
}
