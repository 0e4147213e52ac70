namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// The metadata_props keys of an exported ONNX file (ONNX Runtime: <c>InferenceSession.ModelMetadata.CustomMetadataMap</c>).
/// The deploy-only package (Microsoft.ML.Diffusion.Onnx) reads the same keys.
/// </summary>
public static class OnnxMetadataKeys
{
    /// <summary>The file's format version ("1"); its presence marks a Microsoft.ML.Diffusion export.</summary>
    public const string Format = "mldiffusion.format";

    /// <summary>"sampler" or "network".</summary>
    public const string Content = "mldiffusion.content";

    /// <summary>Image channels C.</summary>
    public const string Channels = "mldiffusion.channels";

    /// <summary>Image height H.</summary>
    public const string Height = "mldiffusion.height";

    /// <summary>Image width W.</summary>
    public const string Width = "mldiffusion.width";

    /// <summary>Number of classes of a class-conditional model (that label means "no label"), or 0.</summary>
    public const string ClassCount = "mldiffusion.class_count";

    /// <summary>The class names of a class-conditional model, as a JSON array, when known.</summary>
    public const string ClassNames = "mldiffusion.class_names";

    /// <summary>Diffusion timesteps T.</summary>
    public const string Timesteps = "mldiffusion.timesteps";

    /// <summary>The β schedule family.</summary>
    public const string Schedule = "mldiffusion.schedule";

    /// <summary>What the network predicts: Noise, Start or Velocity.</summary>
    public const string Objective = "mldiffusion.objective";

    /// <summary>The reverse-process variance: FixedSmall, FixedLarge or LearnedRange.</summary>
    public const string Variance = "mldiffusion.variance";

    /// <summary>The network's kind ("UNet", "DiT").</summary>
    public const string Network = "mldiffusion.network";

    /// <summary>The network's settings as JSON.</summary>
    public const string NetworkSettings = "mldiffusion.network_settings";

    /// <summary>The scheduler of a sampler graph, as the model file stores it (JSON with its name).</summary>
    public const string Scheduler = "mldiffusion.scheduler";

    /// <summary>The timesteps a sampler graph visits, comma-separated.</summary>
    public const string VisitedTimesteps = "mldiffusion.visited_timesteps";

    /// <summary>"true" when a sampler graph clamps x̂₀ to [−1, 1].</summary>
    public const string ClipDenoised = "mldiffusion.clip_denoised";

    /// <summary>"unrolled" or "loop".</summary>
    public const string Loop = "mldiffusion.loop";

    /// <summary>How the library draws x_T from a seed (<see cref="NoiseDescription"/>).</summary>
    public const string Noise = "mldiffusion.noise";

    /// <summary>The value of <see cref="Noise"/>.</summary>
    public const string NoiseDescription =
        "x_T of each image: C×H×W float32 standard normal draws of libtorch's CPU generator, seeded with (uint)seed + 0x9E3779B9*(uint)(seed >> 32)";
}
