using System;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Generative models for ML.NET: <c>mlContext.Generative()</c>. The Microsoft.ML.Diffusion.Tools package adds
/// <c>CreateDiffusionExperiment</c> (an option search) to it.
/// </summary>
public sealed class GenerativeCatalog
{
    private readonly MLContext mlContext;
    private readonly IHostEnvironment env;

    internal GenerativeCatalog(MLContext mlContext)
    {
        this.mlContext = mlContext;
        env = mlContext;
    }

    /// <summary>Gets the context the catalog belongs to (packages that extend the catalog build on it).</summary>
    internal MLContext Context => mlContext;

    /// <summary>A denoising diffusion trainer with full options.</summary>
    /// <param name="options">The options.</param>
    /// <returns>The estimator.</returns>
    /// <example><code>
    /// var trainer = mlContext.Generative().Diffusion(new DiffusionTrainerOptions { ImageSize = 28, Channels = 1, TrainSteps = 2000 });
    /// DiffusionSampler sampler = trainer.Fit(data);
    /// </code></example>
    public DiffusionTrainer Diffusion(DiffusionTrainerOptions options) => new(env, options ?? throw new ArgumentNullException(nameof(options)));

    /// <summary>A denoising diffusion trainer with the common settings; everything else takes its default.</summary>
    /// <param name="imageColumnName">The image column (MLImage, or a Single/Byte vector of C·H·W pixels in [0, 255]).</param>
    /// <param name="imageSize">The side of the (square) images.</param>
    /// <param name="channels">1 (grayscale) or 3 (RGB).</param>
    /// <param name="trainSteps">Optimizer steps.</param>
    /// <param name="labelColumnName">An optional label column for a class-conditional model.</param>
    /// <returns>The estimator.</returns>
    public DiffusionTrainer Diffusion(string imageColumnName = "Image", int imageSize = 32, int channels = 1, int trainSteps = 2000, string? labelColumnName = null) =>
        new(env, new DiffusionTrainerOptions
        {
            ImageColumnName = imageColumnName,
            ImageSize = imageSize,
            Channels = channels,
            TrainSteps = trainSteps,
            LabelColumnName = labelColumnName,
        });
}

/// <summary>The entry point of Microsoft.ML.Diffusion on <see cref="MLContext"/>.</summary>
public static class MLContextGenerativeExtensions
{
    /// <summary>Gets the catalog of generative models.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <returns>The catalog.</returns>
    public static GenerativeCatalog Generative(this MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return new GenerativeCatalog(mlContext);
    }
}
