using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>
/// A Gaussian diffusion (Ho et al. 2020) around any <see cref="Denoiser"/> (the <see cref="UNet"/>, or your own): the forward process, the posterior, the reverse-process
/// parameters, the training loss and the variational bound. Images are N×C×H×W tensors in [−1, 1].
/// </summary>
/// <remarks>
/// Timesteps are 0-based: index t holds the paper's step t + 1. The schedule's buffers are kept in double precision and
/// cast to the images' dtype when gathered; the exponential moving average and the optimizer never see them (they are
/// buffers, not parameters). Sampling lives in <c>Sampling/</c> (the schedulers of <c>Core/Sampling</c>).
/// </remarks>
public sealed class GaussianDiffusion : nn.Module
{
    private static readonly Scalar Ln2 = 0.69314718055994530942.ToScalar();
    private static readonly Scalar MinusOne = (-1.0).ToScalar(); // clipping x₀ to [−1, 1]
    private readonly GaussianDiffusionOptions options;
    private readonly Denoiser model;
    private readonly bool ownsModel = true;
    private readonly Tensor betas;
    private readonly Tensor sqrt_alphas_cumprod;
    private readonly Tensor sqrt_one_minus_alphas_cumprod;
    private readonly Tensor log_one_minus_alphas_cumprod;
    private readonly Tensor sqrt_recip_alphas_cumprod;
    private readonly Tensor sqrt_recipm1_alphas_cumprod;
    private readonly Tensor posterior_variance;
    private readonly Tensor posterior_log_variance_clipped;
    private readonly Tensor posterior_mean_coef1;
    private readonly Tensor posterior_mean_coef2;
    private readonly Tensor fixed_large_variance;
    private readonly Tensor fixed_large_log_variance;
    private readonly Tensor log_betas;
    private readonly Tensor snr;
    private readonly Tensor? timestep_map;

    /// <summary>Initializes a new instance of the <see cref="GaussianDiffusion"/> class for square images.</summary>
    /// <param name="model">The noise predictor; its output channels must match <paramref name="variance"/>.</param>
    /// <param name="imageSize">Image side in pixels.</param>
    /// <param name="timesteps">T, the number of diffusion steps.</param>
    /// <param name="loss">The distance of the simple loss.</param>
    /// <param name="schedule">The β schedule family.</param>
    /// <param name="objective">What the network predicts.</param>
    /// <param name="variance">The reverse-process variance.</param>
    public GaussianDiffusion(
        Denoiser model,
        int imageSize,
        int timesteps = 1000,
        DiffusionLoss loss = DiffusionLoss.MeanSquaredError,
        BetaSchedule schedule = BetaSchedule.Linear,
        PredictionTarget objective = PredictionTarget.Noise,
        VarianceType variance = VarianceType.FixedSmall)
        : this(model, NoiseSchedule.Create(schedule, timesteps), imageSize, imageSize, objective, loss, variance)
    {
    }

    /// <summary>Initializes a new instance of the <see cref="GaussianDiffusion"/> class.</summary>
    /// <param name="model">The noise predictor; its output channels must match <paramref name="variance"/>.</param>
    /// <param name="schedule">The noise schedule.</param>
    /// <param name="imageHeight">Image height in pixels.</param>
    /// <param name="imageWidth">Image width in pixels.</param>
    /// <param name="objective">What the network predicts.</param>
    /// <param name="loss">The distance of the simple loss.</param>
    /// <param name="variance">The reverse-process variance.</param>
    public GaussianDiffusion(
        Denoiser model,
        NoiseSchedule schedule,
        int imageHeight,
        int imageWidth,
        PredictionTarget objective = PredictionTarget.Noise,
        DiffusionLoss loss = DiffusionLoss.MeanSquaredError,
        VarianceType variance = VarianceType.FixedSmall)
        : this(Describe(model, schedule, imageHeight, imageWidth, objective, loss, variance), model, schedule)
    {
    }

    /// <summary>
    /// Initializes a new instance of the <see cref="GaussianDiffusion"/> class from its description, with a fresh network
    /// (weights from torch's global generator), on the CPU. The same as <see cref="GaussianDiffusionOptions.CreateDiffusion"/>.
    /// </summary>
    /// <param name="options">The description; validated here, and copied.</param>
    /// <exception cref="ArgumentException">The description is invalid (see <see cref="GaussianDiffusionOptions.Validate"/>).</exception>
    public GaussianDiffusion(GaussianDiffusionOptions options)
        : this(Validated(options), model: null, schedule: null)
    {
    }

    // The one constructor: `options` is a validated copy owned by this instance; a missing network or schedule is built from it.
    private GaussianDiffusion(GaussianDiffusionOptions options, Denoiser? model, NoiseSchedule? schedule)
        : base(nameof(GaussianDiffusion))
    {
        DiffusionRuntime.EnsureNativeAllocatorTuned();
        schedule ??= options.CreateSchedule();
        model ??= options.Network.CreateDenoiser();

        // The description records what was built: the exact β values and the network's own settings.
        options.Schedule = schedule.Kind;
        options.Betas = schedule.Betas.ToArray();
        options.Timesteps = schedule.Timesteps;
        options.Network = model.Options.Clone();
        this.options = options;
        this.model = model;
        Schedule = schedule;

        var largeVariance = schedule.Betas.ToArray();
        largeVariance[0] = schedule.PosteriorVariance[1];
        betas = Buffer(schedule.Betas.ToArray());
        sqrt_alphas_cumprod = Buffer(schedule.SqrtAlphasCumprod.ToArray());
        sqrt_one_minus_alphas_cumprod = Buffer(schedule.SqrtOneMinusAlphasCumprod.ToArray());
        log_one_minus_alphas_cumprod = Buffer(schedule.LogOneMinusAlphasCumprod.ToArray());
        sqrt_recip_alphas_cumprod = Buffer(schedule.SqrtRecipAlphasCumprod.ToArray());
        sqrt_recipm1_alphas_cumprod = Buffer(schedule.SqrtRecipMinusOneAlphasCumprod.ToArray());
        posterior_variance = Buffer(schedule.PosteriorVariance.ToArray());
        posterior_log_variance_clipped = Buffer(schedule.PosteriorLogVarianceClipped.ToArray());
        posterior_mean_coef1 = Buffer(schedule.PosteriorMeanCoef1.ToArray());
        posterior_mean_coef2 = Buffer(schedule.PosteriorMeanCoef2.ToArray());
        fixed_large_variance = Buffer(largeVariance);
        fixed_large_log_variance = Buffer(largeVariance.Select(v => Math.Log(v)).ToArray());
        log_betas = Buffer(schedule.Betas.Select(v => Math.Log(v)).ToArray());
        snr = Buffer(schedule.SignalToNoiseRatio.ToArray());
        RegisterComponents();
    }

    private GaussianDiffusion(GaussianDiffusion parent, NoiseSchedule schedule, long[] timestepMap)
        : this(Describe(parent.model, schedule, parent.ImageHeight, parent.ImageWidth, parent.Objective, parent.LossType, parent.Variance), parent.model, schedule)
    {
        timestep_map = tensor(timestepMap, dtype: int64).to(parent.Device);
        ownsModel = false;
        MinSnrGamma = parent.MinSnrGamma;
        HybridLambda = parent.HybridLambda;
        this.to(parent.Device);
    }

    // The description of a diffusion around an existing network and schedule, validated.
    private static GaussianDiffusionOptions Describe(
        Denoiser model, NoiseSchedule schedule, int imageHeight, int imageWidth, PredictionTarget objective, DiffusionLoss loss, VarianceType variance)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(schedule);
        var options = new GaussianDiffusionOptions
        {
            ImageHeight = imageHeight,
            ImageWidth = imageWidth,
            Schedule = schedule.Kind,
            Betas = schedule.Betas,
            Objective = objective,
            Loss = loss,
            Variance = variance,
            Network = model.Options,
        };
        options.Validate();
        return options;
    }

    private static GaussianDiffusionOptions Validated(GaussianDiffusionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var copy = options.Clone();
        copy.Validate();
        return copy;
    }

    /// <summary>Gets the network.</summary>
    public Denoiser Model => model;

    /// <summary>Gets the noise schedule.</summary>
    public NoiseSchedule Schedule { get; }

    /// <summary>Gets T.</summary>
    public int Timesteps => Schedule.Timesteps;

    /// <summary>
    /// Gets a copy of this diffusion's description: the image size, the exact β values (with the family they come from),
    /// the objective, loss, variance, loss weighting and the network's settings. <see cref="GaussianDiffusionOptions.CreateDiffusion"/>
    /// on it builds the same diffusion with fresh weights.
    /// </summary>
    public GaussianDiffusionOptions Options => options.Clone();

    /// <summary>Gets the image height.</summary>
    public int ImageHeight => options.ImageHeight;

    /// <summary>Gets the image width.</summary>
    public int ImageWidth => options.ImageWidth;

    /// <summary>Gets the image channels.</summary>
    public int Channels => model.Channels;

    /// <summary>Gets what the network predicts.</summary>
    public PredictionTarget Objective => options.Objective;

    /// <summary>Gets the distance used by the simple loss.</summary>
    public DiffusionLoss LossType => options.Loss;

    /// <summary>Gets the reverse-process variance.</summary>
    public VarianceType Variance => options.Variance;

    /// <summary>Gets or sets γ of min-SNR-γ loss weighting (Hang et al. 2023), or null for uniform weights.</summary>
    public double? MinSnrGamma
    {
        get => options.MinSnrGamma;
        set => options.MinSnrGamma = value;
    }

    /// <summary>Gets or sets λ of the hybrid loss L_simple + λ·L_vlb used with learned variance. Default 0.001.</summary>
    public double HybridLambda
    {
        get => options.HybridLambda;
        set => options.HybridLambda = value;
    }

    /// <summary>Gets the original timesteps this (respaced) diffusion's steps stand for, or null when it is not respaced.</summary>
    public IReadOnlyList<long>? RespacedTimesteps => timestep_map?.cpu().data<long>().ToArray();

    /// <summary>
    /// A diffusion over a subsequence τ₁ &lt; … &lt; τ_K of this one's timesteps (Nichol &amp; Dhariwal 2021, section 4):
    /// ᾱ'_i = ᾱ_{τ_i}, β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}, sharing this network, which it calls with the original timestep τ_i.
    /// Its variational bound is a valid bound on the likelihood of the respaced model (not of the full T-step one).
    /// The result shares the network: disposing it releases its own buffers only, never the shared network.
    /// </summary>
    /// <param name="steps">K, the number of steps kept (2 ≤ K ≤ T); evenly spaced, always including the first and last.</param>
    /// <returns>The respaced diffusion.</returns>
    public GaussianDiffusion Respace(int steps)
    {
        if (steps < 2 || steps > Timesteps)
        {
            throw new ArgumentOutOfRangeException(nameof(steps), steps, $"A respaced chain needs between 2 and {Timesteps} steps.");
        }

        var kept = NoiseSchedule.EvenlySpacedTimesteps(Timesteps, steps).Select(t => (long)t).ToArray();
        var betas = new double[steps];
        double previous = 1.0;
        for (int i = 0; i < steps; i++)
        {
            double current = Schedule.AlphasCumprod[(int)kept[i]];
            betas[i] = 1.0 - (current / previous);
            previous = current;
        }

        return new GaussianDiffusion(this, NoiseSchedule.Restore(Schedule.Kind, betas), kept);
    }

    /// <summary>Gets the device the buffers and the network live on.</summary>
    public Device Device => betas.device;

    /// <summary>Samples x_t ~ q(x_t | x₀) = √ᾱ_t x₀ + √(1 − ᾱ_t) ε (eq. 4).</summary>
    /// <param name="xStart">x₀.</param>
    /// <param name="t">Timesteps, shape N.</param>
    /// <param name="noise">ε.</param>
    /// <returns>x_t.</returns>
    public Tensor QSample(Tensor xStart, Tensor t, Tensor noise)
    {
        using var scope = NewDisposeScope();
        return (Extract(sqrt_alphas_cumprod, t, xStart) * xStart).Plus(Extract(sqrt_one_minus_alphas_cumprod, t, xStart) * noise).MoveToOuterDisposeScope();
    }

    /// <summary>x₀ = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t (eq. 4 solved for x₀).</summary>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="noise">ε.</param>
    /// <returns>x₀.</returns>
    public Tensor PredictStartFromNoise(Tensor xt, Tensor t, Tensor noise)
    {
        using var scope = NewDisposeScope();
        return ((Extract(sqrt_recip_alphas_cumprod, t, xt) * xt) - (Extract(sqrt_recipm1_alphas_cumprod, t, xt) * noise)).MoveToOuterDisposeScope();
    }

    /// <summary>ε = (x_t/√ᾱ_t − x₀)/√(1/ᾱ_t − 1).</summary>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="xStart">x₀.</param>
    /// <returns>ε.</returns>
    public Tensor PredictNoiseFromStart(Tensor xt, Tensor t, Tensor xStart)
    {
        using var scope = NewDisposeScope();
        return (((Extract(sqrt_recip_alphas_cumprod, t, xt) * xt) - xStart) / Extract(sqrt_recipm1_alphas_cumprod, t, xt)).MoveToOuterDisposeScope();
    }

    /// <summary>v = √ᾱ_t ε − √(1 − ᾱ_t) x₀ (Salimans &amp; Ho 2022).</summary>
    /// <param name="xStart">x₀.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="noise">ε.</param>
    /// <returns>v.</returns>
    public Tensor PredictVelocity(Tensor xStart, Tensor t, Tensor noise)
    {
        using var scope = NewDisposeScope();
        return ((Extract(sqrt_alphas_cumprod, t, xStart) * noise) - (Extract(sqrt_one_minus_alphas_cumprod, t, xStart) * xStart)).MoveToOuterDisposeScope();
    }

    /// <summary>x₀ = √ᾱ_t x_t − √(1 − ᾱ_t) v.</summary>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="velocity">v.</param>
    /// <returns>x₀.</returns>
    public Tensor PredictStartFromVelocity(Tensor xt, Tensor t, Tensor velocity)
    {
        using var scope = NewDisposeScope();
        return ((Extract(sqrt_alphas_cumprod, t, xt) * xt) - (Extract(sqrt_one_minus_alphas_cumprod, t, xt) * velocity)).MoveToOuterDisposeScope();
    }

    /// <summary>The posterior q(x_{t−1} | x_t, x₀) = N(μ̃_t, β̃_t I) (eq. 6–7).</summary>
    /// <param name="xStart">x₀.</param>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <returns>μ̃_t, β̃_t and the clipped log β̃_t (the last two broadcastable, N×1×1×1).</returns>
    public (Tensor Mean, Tensor Variance, Tensor LogVariance) QPosterior(Tensor xStart, Tensor xt, Tensor t)
    {
        using var scope = NewDisposeScope();
        var mean = (Extract(posterior_mean_coef1, t, xt) * xStart).Plus(Extract(posterior_mean_coef2, t, xt) * xt);
        var variance = Extract(posterior_variance, t, xt);
        var logVariance = Extract(posterior_log_variance_clipped, t, xt);
        return (mean.MoveToOuterDisposeScope(), variance.MoveToOuterDisposeScope(), logVariance.MoveToOuterDisposeScope());
    }

    /// <summary>Runs the network, with classifier-free guidance when <paramref name="guidanceScale"/> ≠ 1 and labels are given.</summary>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="classes">Labels (class-conditional networks only) or null.</param>
    /// <param name="guidanceScale">w in ε̃ = ε(∅) + w·(ε(c) − ε(∅)); 1 = plain conditional.</param>
    /// <returns>The raw output, N×OutputChannels×H×W.</returns>
    public Tensor ModelOutput(Tensor xt, Tensor t, Tensor? classes = null, double guidanceScale = 1.0)
    {
        if (classes is null || guidanceScale == 1.0 || model.ClassCount == 0)
        {
            return model.forward(xt, NetworkTime(t), classes);
        }

        using var scope = NewDisposeScope();
        var conditional = model.forward(xt, NetworkTime(t), classes);
        using Scalar nullClass = model.ClassCount.ToScalar(), scale = guidanceScale.ToScalar();
        var unconditional = model.forward(xt, NetworkTime(t), full_like(classes, nullClass));
        var guided = unconditional.Plus(scale * (conditional - unconditional));
        if (Variance == VarianceType.LearnedRange)
        {
            // Guide the mean part only; keep the conditional variance.
            guided = cat(new[] { guided[.., ..Channels], conditional[.., Channels..] }, 1);
        }

        return guided.MoveToOuterDisposeScope();
    }

    /// <summary>p_θ(x_{t−1} | x_t): runs the network and turns its output into mean, variance, x̂₀ and ε̂.</summary>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="classes">Labels or null.</param>
    /// <param name="clipDenoised">Clamp x̂₀ to [−1, 1].</param>
    /// <param name="guidanceScale">Classifier-free guidance scale.</param>
    /// <returns>The prediction.</returns>
    public DiffusionPrediction PMeanVariance(Tensor xt, Tensor t, Tensor? classes = null, bool clipDenoised = true, double guidanceScale = 1.0)
    {
        using var scope = NewDisposeScope();
        var output = ModelOutput(xt, t, classes, guidanceScale);
        var prediction = PMeanVarianceFromOutput(output, xt, t, clipDenoised);
        return MoveOut(prediction);
    }

    /// <summary>Turns a network output into p_θ(x_{t−1} | x_t) (Ho et al. 2020 eq. 11; Nichol &amp; Dhariwal 2021 eq. 15).</summary>
    /// <param name="output">The network's output for (x_t, t).</param>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="clipDenoised">Clamp x̂₀ to [−1, 1].</param>
    /// <returns>The prediction.</returns>
    public DiffusionPrediction PMeanVarianceFromOutput(Tensor output, Tensor xt, Tensor t, bool clipDenoised)
    {
        using var scope = NewDisposeScope();
        Tensor meanOutput = output;
        Tensor variance, logVariance;
        switch (Variance)
        {
            case VarianceType.FixedSmall:
                variance = Extract(posterior_variance, t, xt);
                logVariance = Extract(posterior_log_variance_clipped, t, xt);
                break;
            case VarianceType.FixedLarge:
                variance = Extract(fixed_large_variance, t, xt);
                logVariance = Extract(fixed_large_log_variance, t, xt);
                break;
            default:
                var parts = output.chunk(2, 1);
                meanOutput = parts[0];
                var fraction = parts[1].Plus(Scalars.One) / Scalars.Two;
                var minLog = Extract(posterior_log_variance_clipped, t, xt);
                var maxLog = Extract(log_betas, t, xt);
                logVariance = (fraction * maxLog).Plus(Scalars.One.Minus(fraction) * minLog);
                variance = logVariance.exp();
                break;
        }

        var start = Objective switch
        {
            PredictionTarget.Noise => PredictStartFromNoise(xt, t, meanOutput),
            PredictionTarget.Start => meanOutput,
            _ => PredictStartFromVelocity(xt, t, meanOutput),
        };
        if (clipDenoised)
        {
            start = start.clamp(MinusOne, Scalars.OneReal);
        }

        var noise = Objective == PredictionTarget.Noise && !clipDenoised ? meanOutput : PredictNoiseFromStart(xt, t, start);
        var mean = QPosterior(start, xt, t).Mean;
        return MoveOut(new DiffusionPrediction(mean, variance, logVariance, start, noise));
    }

    /// <summary>
    /// The training loss of a batch: t ~ U{0…T−1}, ε ~ N(0, I), the simple loss between the network's output and its target
    /// (Ho et al. 2020, eq. 14), optionally min-SNR-γ weighted, plus λ·T·L_t(vlb) when the variance is learned
    /// (Nichol &amp; Dhariwal 2021, eq. 16).
    /// </summary>
    /// <param name="images">x₀ in [−1, 1], N×C×H×W.</param>
    /// <param name="classes">Labels (class-conditional networks) or null.</param>
    /// <param name="generator">Random source for t and ε (drawn on the CPU, see <see cref="DeviceRandom"/>), or null for torch's global one.</param>
    /// <returns>The mean loss, a scalar.</returns>
    public Tensor Loss(Tensor images, Tensor? classes = null, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        CheckImages(images);
        using var scope = NewDisposeScope();
        var t = DeviceRandom.Integers(0, Timesteps, new[] { images.shape[0] }, images.device, generator);
        var noise = DeviceRandom.Normal(images.shape, images.device, images.dtype, generator);
        return LossPerSample(images, t, noise, classes).mean().MoveToOuterDisposeScope();
    }

    /// <summary>The per-image training loss at given timesteps and noise (see <see cref="Loss"/>).</summary>
    /// <param name="images">x₀ in [−1, 1].</param>
    /// <param name="t">Timesteps, shape N.</param>
    /// <param name="noise">ε, the images' shape.</param>
    /// <param name="classes">Labels or null.</param>
    /// <returns>Shape N.</returns>
    public Tensor LossPerSample(Tensor images, Tensor t, Tensor noise, Tensor? classes = null)
    {
        using var scope = NewDisposeScope();
        var xt = QSample(images, t, noise);
        var output = model.forward(xt, NetworkTime(t), classes);
        var meanOutput = Variance == VarianceType.LearnedRange ? output.chunk(2, 1)[0] : output;
        var target = Objective switch
        {
            PredictionTarget.Noise => noise,
            PredictionTarget.Start => images,
            _ => PredictVelocity(images, t, noise),
        };
        var difference = meanOutput - target;
        var elementwise = LossType switch
        {
            DiffusionLoss.MeanAbsoluteError => difference.abs(),
            DiffusionLoss.MeanSquaredError => difference.Squared(),
            _ => where(difference.abs() < Scalars.OneReal, Scalars.Half * difference.Squared(), difference.abs() - Scalars.Half),
        };
        var perSample = elementwise.mean(new long[] { 1, 2, 3 });

        if (MinSnrGamma is double gamma)
        {
            var ratio = snr.gather(0, t).to(perSample.dtype);
            using Scalar limit = gamma.ToScalar();
            var clipped = ratio.clamp_max(limit);
            var weight = Objective switch
            {
                PredictionTarget.Noise => clipped / ratio,
                PredictionTarget.Start => clipped,
                _ => clipped / ratio.Plus(Scalars.One),
            };
            perSample = perSample * weight;
        }

        if (Variance == VarianceType.LearnedRange)
        {
            // The bound trains only the variance: the mean part is frozen (improved-diffusion).
            var frozen = cat(new[] { meanOutput.detach(), output.chunk(2, 1)[1] }, 1);
            var vb = VariationalBoundTermFromOutput(frozen, images, xt, t);
            using Scalar lambda = (HybridLambda * Timesteps).ToScalar();
            perSample = perSample.Plus(lambda * vb);
        }

        return perSample.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean squared error between the true noise ε and the noise ε̂ the network implies (converted from its objective, x̂₀
    /// not clamped), at seeded timesteps spread evenly over 0…T−1 — a validation score comparable across objectives.
    /// </summary>
    /// <param name="images">x₀ in [−1, 1].</param>
    /// <param name="classes">Labels or null.</param>
    /// <param name="seed">Seed of the noise.</param>
    /// <returns>The mean squared error.</returns>
    public double NoisePredictionError(Tensor images, Tensor? classes = null, long seed = 0)
    {
        ArgumentNullException.ThrowIfNull(images);
        CheckImages(images);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var generator = new Generator(unchecked((ulong)seed), CPU);
        long n = images.shape[0];
        using Scalar count = n.ToScalar(), spacing = ((double)Timesteps / n).ToScalar();
        var t = (arange(count, dtype: float64, device: images.device) * spacing).floor().to(int64);
        var noise = DeviceRandom.Normal(images.shape, images.device, images.dtype, generator);
        var xt = QSample(images, t, noise);
        var prediction = PMeanVarianceFromOutput(model.forward(xt, NetworkTime(t), classes), xt, t, clipDenoised: false);
        return (prediction.PredictedNoise - noise).Squared().mean().item<float>();
    }

    /// <summary>
    /// One term of the variational bound per image, in bits per dimension: L₀ = −log p(x₀ | x₁) with the discretised
    /// decoder where t = 0, else L_t = KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)).
    /// </summary>
    /// <param name="images">x₀ in [−1, 1], on the 8-bit grid.</param>
    /// <param name="xt">x_t.</param>
    /// <param name="t">Timesteps.</param>
    /// <param name="classes">Labels or null.</param>
    /// <returns>Shape N.</returns>
    public Tensor VariationalBoundTerm(Tensor images, Tensor xt, Tensor t, Tensor? classes = null)
    {
        using var scope = NewDisposeScope();
        var output = model.forward(xt, NetworkTime(t), classes);
        return VariationalBoundTermFromOutput(output, images, xt, t).MoveToOuterDisposeScope();
    }

    /// <summary>The prior term L_T = KL(q(x_T | x₀) ‖ N(0, I)) per image in bits per dimension; ≈ 0 when ᾱ_T ≈ 0.</summary>
    /// <param name="images">x₀.</param>
    /// <returns>Shape N.</returns>
    public Tensor PriorBitsPerDim(Tensor images)
    {
        using var scope = NewDisposeScope();
        using Scalar lastStep = (Timesteps - 1).ToScalar();
        var last = full(images.shape[0], lastStep, dtype: int64, device: images.device);
        var mean = Extract(sqrt_alphas_cumprod, last, images) * images;
        var logVariance = Extract(log_one_minus_alphas_cumprod, last, images).expand_as(images);
        var kl = GaussianMath.NormalKl(mean, logVariance, zeros_like(mean), zeros_like(mean));
        return (kl.mean(new long[] { 1, 2, 3 }) / Ln2).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The full variational bound of a batch in bits per dimension: the prior term plus every one of the T terms, each
    /// estimated with one draw of x_t ~ q(x_t | x₀). T network evaluations.
    /// </summary>
    /// <param name="images">x₀ in [−1, 1], on the 8-bit grid.</param>
    /// <param name="classes">Labels or null.</param>
    /// <param name="generator">Random source for the x_t draws (drawn on the CPU, see <see cref="DeviceRandom"/>), or null.</param>
    /// <returns>The bound and its parts.</returns>
    public VariationalBound BitsPerDim(Tensor images, Tensor? classes = null, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        CheckImages(images);
        using var noGrad = no_grad();
        long n = images.shape[0];
        var terms = zeros(new[] { n, (long)Timesteps }, dtype: float64, device: images.device);
        for (int step = Timesteps - 1; step >= 0; step--)
        {
            using var scope = NewDisposeScope();
            using Scalar stepScalar = step.ToScalar();
            var t = full(n, stepScalar, dtype: int64, device: images.device);
            var noise = DeviceRandom.Normal(images.shape, images.device, images.dtype, generator);
            var xt = QSample(images, t, noise);
            terms[.., step] = VariationalBoundTerm(images, xt, t, classes).to(float64);
        }

        var prior = PriorBitsPerDim(images).to(float64);
        var total = terms.sum(new long[] { 1 }).Plus(prior);
        return new VariationalBound(total, prior, terms);
    }

    private Tensor VariationalBoundTermFromOutput(Tensor output, Tensor images, Tensor xt, Tensor t)
    {
        using var scope = NewDisposeScope();
        var truth = QPosterior(images, xt, t);
        var prediction = PMeanVarianceFromOutput(output, xt, t, clipDenoised: false);
        var logVariance = prediction.LogVariance.expand_as(images);
        var kl = GaussianMath.NormalKl(truth.Mean, truth.LogVariance.expand_as(images), prediction.Mean, logVariance);
        var klBits = kl.mean(new long[] { 1, 2, 3 }) / Ln2;
        var nll = -GaussianMath.DiscretizedGaussianLogLikelihood(images, prediction.Mean, Scalars.Half * logVariance);
        var nllBits = nll.mean(new long[] { 1, 2, 3 }) / Ln2;
        return where(t.eq(Scalars.Zero), nllBits, klBits).MoveToOuterDisposeScope();
    }

    /// <summary>Releases the buffers, and the network unless this is a respaced view of another diffusion.</summary>
    /// <param name="disposing">Whether managed resources are released.</param>
    protected override void Dispose(bool disposing)
    {
        if (disposing && !ownsModel)
        {
            _internal_submodules.Remove(nameof(model));
            timestep_map?.Dispose();
        }

        base.Dispose(disposing);
    }

    private static DiffusionPrediction MoveOut(DiffusionPrediction p) => new(
        p.Mean.MoveToOuterDisposeScope(),
        p.Variance.MoveToOuterDisposeScope(),
        p.LogVariance.MoveToOuterDisposeScope(),
        p.PredictedStart.MoveToOuterDisposeScope(),
        p.PredictedNoise.MoveToOuterDisposeScope());

    // The timestep the network sees: the original one for a respaced diffusion.
    private Tensor NetworkTime(Tensor t) => timestep_map is null ? t : timestep_map.gather(0, t);

    // a[t] reshaped to N×1×1×1 and cast to the dtype of x.
    private static Tensor Extract(Tensor a, Tensor t, Tensor x)
    {
        return a.gather(0, t).to(x.dtype).view(-1, 1, 1, 1);
    }

    private static Tensor Buffer(double[] values) => tensor(values, dtype: float64);

    private void CheckImages(Tensor images)
    {
        if (images.dim() != 4 || images.shape[1] != Channels || images.shape[2] != ImageHeight || images.shape[3] != ImageWidth)
        {
            throw new ArgumentException(
                $"Expected images N×{Channels}×{ImageHeight}×{ImageWidth} in [−1, 1]; got shape [{string.Join(", ", images.shape)}].", nameof(images));
        }
    }
}
