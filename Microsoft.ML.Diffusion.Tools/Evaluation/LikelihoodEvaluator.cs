using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>Options of <see cref="LikelihoodEvaluator"/>.</summary>
public sealed class LikelihoodOptions
{
    /// <summary>
    /// Gets or sets the number of steps of the chain the bound is computed over: null (default) = all T steps, the exact
    /// variational bound of the trained model; K &lt; T = a respaced chain of K evenly spaced steps, a valid bound for the
    /// respaced model (Nichol &amp; Dhariwal 2021), which is cheaper and usually looser than the full one.
    /// </summary>
    public int? Steps { get; set; }

    /// <summary>Gets or sets images per network call. Default 64.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>Gets or sets the maximum number of images evaluated (the first ones); null = all.</summary>
    public int? MaxImages { get; set; }

    /// <summary>Gets or sets the seed of the x_t draws. Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>Gets or sets the image column; null = the column the model was trained on.</summary>
    public string? ImageColumnName { get; set; }

    /// <summary>Gets or sets an optional receiver of (images done, images total).</summary>
    public IProgress<(int Done, int Total)>? Progress { get; set; }
}

/// <summary>The variational bound of a data set, in bits per dimension, and its parts (all means over the images).</summary>
/// <param name="BitsPerDim">The total: prior + KL terms + decoder.</param>
/// <param name="Prior">L_T = KL(q(x_T | x₀) ‖ N(0, I)).</param>
/// <param name="Decoder">L₀, the discretised-Gaussian decoder's negative log-likelihood.</param>
/// <param name="KlSum">Σ L_{t−1}, the KL terms of the steps between.</param>
/// <param name="PerTimestep">The mean term of each step of the chain, index 0 = the decoder.</param>
/// <param name="Images">How many images were evaluated.</param>
/// <param name="Steps">The length of the chain (T, or K for a respaced chain).</param>
public sealed record LikelihoodResult(double BitsPerDim, double Prior, double Decoder, double KlSum, IReadOnlyList<double> PerTimestep, int Images, int Steps);

/// <summary>
/// Bits per dimension of a test <see cref="IDataView"/> under a trained diffusion model: the full variational bound
/// −log p(x₀) ≤ L_T + Σ L_{t−1} + L₀ (Ho et al. 2020, eq. 5), each KL term in closed form, the decoder L₀ with the
/// discretised Gaussian likelihood of 8-bit data; as reported by improved-diffusion and the original DDPM code.
/// </summary>
public sealed class LikelihoodEvaluator
{
    private readonly DiffusionModel model;

    /// <summary>Initializes a new instance of the <see cref="LikelihoodEvaluator"/> class.</summary>
    /// <param name="model">The model (for example <c>sampler.Model</c>).</param>
    public LikelihoodEvaluator(DiffusionModel model)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
    }

    /// <summary>Evaluates the bound on the images of a data view (the model's image column and size).</summary>
    /// <param name="data">The test data.</param>
    /// <param name="options">Options; null for the defaults (all T steps).</param>
    /// <returns>The bound and its parts.</returns>
    public LikelihoodResult Evaluate(IDataView data, LikelihoodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        options ??= new LikelihoodOptions();
        string column = options.ImageColumnName ?? model.Config.ImageColumnName;
        string? labelColumn = model.ClassCount > 0 && model.Config.LabelColumnName is string l && data.Schema.GetColumnOrNull(l) is not null ? l : null;
        using var images = ImageBatchReader.ReadAll(data, column, labelColumn, model.Channels, model.ImageHeight, model.ImageWidth);
        return Evaluate(images.Images, images.Labels, options);
    }

    /// <summary>Evaluates the bound on images already in model space.</summary>
    /// <param name="images">N×C×H×W in [−1, 1], on the 8-bit grid (k·2/255 − 1).</param>
    /// <param name="labels">Class labels for a class-conditional model, or null (evaluated unconditionally).</param>
    /// <param name="options">Options; null for the defaults.</param>
    /// <returns>The bound and its parts.</returns>
    public LikelihoodResult Evaluate(Tensor images, Tensor? labels = null, LikelihoodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        options ??= new LikelihoodOptions();
        if (options.BatchSize < 1 || options.Steps is < 2 || options.MaxImages is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "BatchSize must be positive, Steps at least 2 and MaxImages positive.");
        }

        var full = model.Diffusion;
        using var respaced = options.Steps is int k && k < full.Timesteps ? full.Respace(k) : null;
        var diffusion = respaced ?? full;
        int total = (int)Math.Min(images.shape[0], options.MaxImages ?? long.MaxValue);
        int steps = diffusion.Timesteps;
        var perStep = new double[steps];
        double prior = 0;
        using var generator = new Generator(unchecked((ulong)options.Seed), CPU); // draws go through DeviceRandom
        for (int start = 0; start < total; start += options.BatchSize)
        {
            using var scope = NewDisposeScope();
            int count = Math.Min(options.BatchSize, total - start);
            var batch = images[start..(start + count)].to(float32, diffusion.Device);
            var classes = labels?[start..(start + count)].to(int64, diffusion.Device);
            using var bound = diffusion.BitsPerDim(batch, classes, generator);
            var termSums = bound.Terms.sum(new long[] { 0 }).cpu().data<double>().ToArray();
            for (int t = 0; t < steps; t++)
            {
                perStep[t] += termSums[t];
            }

            prior += bound.Prior.sum().item<double>();
            options.Progress?.Report((start + count, total));
        }

        for (int t = 0; t < steps; t++)
        {
            perStep[t] /= total;
        }

        prior /= total;
        double decoder = perStep[0];
        double kl = perStep.Skip(1).Sum();
        return new LikelihoodResult(prior + decoder + kl, prior, decoder, kl, perStep, total, steps);
    }
}
