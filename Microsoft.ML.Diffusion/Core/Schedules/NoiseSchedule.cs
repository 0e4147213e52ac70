using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Microsoft.ML.Diffusion.Core.Schedules;

/// <summary>
/// The fixed variance schedule of a Gaussian diffusion: β₁…β_T and every quantity derived from it,
/// computed in double precision (index i holds timestep t = i + 1 of the paper; code uses t = i).
/// </summary>
/// <remarks>
/// With α_t = 1 − β_t and ᾱ_t = ∏ α_s, the forward process is q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
/// (Ho et al. 2020, eq. 4) and the posterior q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) has
/// μ̃_t = c₁ x_0 + c₂ x_t with c₁ = β_t √ᾱ_{t−1} / (1 − ᾱ_t), c₂ = (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t) and
/// β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (eq. 6–7).
/// </remarks>
public sealed class NoiseSchedule
{
    private const double CosineOffset = 0.008;
    private const double MaxBeta = 0.999;

    private NoiseSchedule(BetaSchedule kind, double[] betas)
    {
        Kind = kind;
        CheckBetas(betas);
        int n = betas.Length;
        var alphas = new double[n];
        var alphasCumprod = new double[n];
        var alphasCumprodPrev = new double[n];
        var sqrtAlphasCumprod = new double[n];
        var sqrtOneMinusAlphasCumprod = new double[n];
        var logOneMinusAlphasCumprod = new double[n];
        var sqrtRecipAlphasCumprod = new double[n];
        var sqrtRecipMinusOneAlphasCumprod = new double[n];
        var posteriorVariance = new double[n];
        var posteriorLogVarianceClipped = new double[n];
        var posteriorMeanCoef1 = new double[n];
        var posteriorMeanCoef2 = new double[n];
        var signalToNoiseRatio = new double[n];

        double cumulative = 1.0;
        for (int i = 0; i < n; i++)
        {
            alphas[i] = 1.0 - betas[i];
            alphasCumprodPrev[i] = cumulative;
            cumulative *= alphas[i];
            alphasCumprod[i] = cumulative;
        }

        for (int i = 0; i < n; i++)
        {
            double ac = alphasCumprod[i];
            double acPrev = alphasCumprodPrev[i];
            sqrtAlphasCumprod[i] = Math.Sqrt(ac);
            sqrtOneMinusAlphasCumprod[i] = Math.Sqrt(1.0 - ac);
            logOneMinusAlphasCumprod[i] = Math.Log(1.0 - ac);
            sqrtRecipAlphasCumprod[i] = Math.Sqrt(1.0 / ac);
            sqrtRecipMinusOneAlphasCumprod[i] = Math.Sqrt((1.0 / ac) - 1.0);
            posteriorVariance[i] = betas[i] * (1.0 - acPrev) / (1.0 - ac);
            posteriorMeanCoef1[i] = betas[i] * Math.Sqrt(acPrev) / (1.0 - ac);
            posteriorMeanCoef2[i] = (1.0 - acPrev) * Math.Sqrt(alphas[i]) / (1.0 - ac);
            signalToNoiseRatio[i] = ac / (1.0 - ac);
        }

        // β̃_1 = 0: the log is clipped by using β̃_2 in its place, as improved-diffusion does.
        for (int i = 0; i < n; i++)
        {
            posteriorLogVarianceClipped[i] = Math.Log(i == 0 ? posteriorVariance[1] : posteriorVariance[i]);
        }

        Betas = betas;
        Alphas = alphas;
        AlphasCumprod = alphasCumprod;
        AlphasCumprodPrev = alphasCumprodPrev;
        SqrtAlphasCumprod = sqrtAlphasCumprod;
        SqrtOneMinusAlphasCumprod = sqrtOneMinusAlphasCumprod;
        LogOneMinusAlphasCumprod = logOneMinusAlphasCumprod;
        SqrtRecipAlphasCumprod = sqrtRecipAlphasCumprod;
        SqrtRecipMinusOneAlphasCumprod = sqrtRecipMinusOneAlphasCumprod;
        PosteriorVariance = posteriorVariance;
        PosteriorLogVarianceClipped = posteriorLogVarianceClipped;
        PosteriorMeanCoef1 = posteriorMeanCoef1;
        PosteriorMeanCoef2 = posteriorMeanCoef2;
        SignalToNoiseRatio = signalToNoiseRatio;
    }

    /// <summary>Gets the family this schedule was made from.</summary>
    public BetaSchedule Kind { get; }

    /// <summary>Gets the number of diffusion steps T.</summary>
    public int Timesteps => Betas.Count;

    /// <summary>Gets β_t.</summary>
    public IReadOnlyList<double> Betas { get; }

    /// <summary>Gets α_t = 1 − β_t.</summary>
    public IReadOnlyList<double> Alphas { get; }

    /// <summary>Gets ᾱ_t = ∏_{s ≤ t} α_s.</summary>
    public IReadOnlyList<double> AlphasCumprod { get; }

    /// <summary>Gets ᾱ_{t−1} (1 at the first step).</summary>
    public IReadOnlyList<double> AlphasCumprodPrev { get; }

    /// <summary>Gets √ᾱ_t.</summary>
    public IReadOnlyList<double> SqrtAlphasCumprod { get; }

    /// <summary>Gets √(1 − ᾱ_t).</summary>
    public IReadOnlyList<double> SqrtOneMinusAlphasCumprod { get; }

    /// <summary>Gets log(1 − ᾱ_t).</summary>
    public IReadOnlyList<double> LogOneMinusAlphasCumprod { get; }

    /// <summary>Gets √(1/ᾱ_t).</summary>
    public IReadOnlyList<double> SqrtRecipAlphasCumprod { get; }

    /// <summary>Gets √(1/ᾱ_t − 1).</summary>
    public IReadOnlyList<double> SqrtRecipMinusOneAlphasCumprod { get; }

    /// <summary>Gets the posterior variance β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t).</summary>
    public IReadOnlyList<double> PosteriorVariance { get; }

    /// <summary>Gets log β̃_t, with the first entry (log 0) replaced by log β̃ of the second step.</summary>
    public IReadOnlyList<double> PosteriorLogVarianceClipped { get; }

    /// <summary>Gets c₁ = β_t √ᾱ_{t−1} / (1 − ᾱ_t), the weight of x_0 in the posterior mean.</summary>
    public IReadOnlyList<double> PosteriorMeanCoef1 { get; }

    /// <summary>Gets c₂ = (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t), the weight of x_t in the posterior mean.</summary>
    public IReadOnlyList<double> PosteriorMeanCoef2 { get; }

    /// <summary>Gets the signal-to-noise ratio ᾱ_t / (1 − ᾱ_t).</summary>
    public IReadOnlyList<double> SignalToNoiseRatio { get; }

    /// <summary>Creates a schedule of the given family with its default parameters.</summary>
    /// <param name="kind">The family; <see cref="BetaSchedule.Custom"/> needs <see cref="Custom"/> instead.</param>
    /// <param name="timesteps">T, at least 2.</param>
    /// <returns>The schedule.</returns>
    public static NoiseSchedule Create(BetaSchedule kind, int timesteps) => kind switch
    {
        BetaSchedule.Linear => Linear(timesteps),
        BetaSchedule.Cosine => Cosine(timesteps),
        BetaSchedule.Sigmoid => Sigmoid(timesteps),
        BetaSchedule.Geometric => Geometric(timesteps),
        BetaSchedule.Custom => throw new ArgumentException("A custom schedule needs its β array: call NoiseSchedule.Custom(betas).", nameof(kind)),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown beta schedule."),
    };

    /// <summary>
    /// Linear β from 1e-4 to 0.02 (Ho et al. 2020), both scaled by 1000/T so that any T gives a similar ᾱ_T; for T &lt; 50 the
    /// scaled bounds are capped at 0.999.
    /// </summary>
    /// <param name="timesteps">T, at least 2.</param>
    /// <returns>The schedule.</returns>
    public static NoiseSchedule Linear(int timesteps)
    {
        CheckTimesteps(timesteps);
        double scale = 1000.0 / timesteps;
        double start = Math.Min(scale * 1e-4, MaxBeta);
        double end = Math.Min(scale * 0.02, MaxBeta);
        var betas = new double[timesteps];
        for (int i = 0; i < timesteps; i++)
        {
            betas[i] = start + ((end - start) * i / (timesteps - 1));
        }

        return new NoiseSchedule(BetaSchedule.Linear, betas);
    }

    /// <summary>The cosine schedule of Nichol &amp; Dhariwal 2021 (eq. 17), s = 0.008, β clipped at 0.999.</summary>
    /// <param name="timesteps">T, at least 2.</param>
    /// <returns>The schedule.</returns>
    public static NoiseSchedule Cosine(int timesteps)
    {
        CheckTimesteps(timesteps);
        return FromAlphaBar(BetaSchedule.Cosine, timesteps, u =>
        {
            double c = Math.Cos((u + CosineOffset) / (1 + CosineOffset) * Math.PI / 2);
            return c * c;
        });
    }

    /// <summary>
    /// The sigmoid schedule of denoising-diffusion-pytorch (Jabri et al. 2022):
    /// ᾱ(u) ∝ σ(end/τ) − σ((u·(end − start) + start)/τ), normalised to ᾱ(0) = 1, β clipped at 0.999.
    /// </summary>
    /// <param name="timesteps">T, at least 2.</param>
    /// <param name="start">Left end of the sigmoid's input range.</param>
    /// <param name="end">Right end of the sigmoid's input range.</param>
    /// <param name="tau">Temperature τ.</param>
    /// <returns>The schedule.</returns>
    public static NoiseSchedule Sigmoid(int timesteps, double start = -3, double end = 3, double tau = 1)
    {
        CheckTimesteps(timesteps);
        if (!(end > start) || !(tau > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(tau), "The sigmoid schedule needs end > start and tau > 0.");
        }

        double vEnd = Logistic(end / tau);
        return FromAlphaBar(BetaSchedule.Sigmoid, timesteps, u => vEnd - Logistic(((u * (end - start)) + start) / tau));
    }

    /// <summary>β_t = β_first·(β_last/β_first)^((t−1)/(T−1)): geometric growth between two bounds.</summary>
    /// <remarks>
    /// The default bounds, 1e-4 and 0.06 scaled by 1000/T, give ᾱ_T ≈ 5e-5, close to the linear schedule's 4e-5, so that
    /// x_T is pure noise; with the linear schedule's own upper bound (0.02) ᾱ_T would stay near 0.02.
    /// </remarks>
    /// <param name="timesteps">T, at least 2.</param>
    /// <param name="first">β₁; by default 1e-4·1000/T.</param>
    /// <param name="last">β_T; by default 0.06·1000/T.</param>
    /// <returns>The schedule.</returns>
    public static NoiseSchedule Geometric(int timesteps, double? first = null, double? last = null)
    {
        CheckTimesteps(timesteps);
        double scale = 1000.0 / timesteps;
        double b1 = first ?? scale * 1e-4;
        double bT = last ?? Math.Min(scale * 0.06, MaxBeta);
        if (!(b1 > 0) || !(bT < 1) || !(bT >= b1))
        {
            throw new ArgumentOutOfRangeException(nameof(first), $"The geometric schedule needs 0 < first ≤ last < 1; got {b1} and {bT}.");
        }

        var betas = new double[timesteps];
        for (int i = 0; i < timesteps; i++)
        {
            betas[i] = b1 * Math.Pow(bT / b1, (double)i / (timesteps - 1));
        }

        return new NoiseSchedule(BetaSchedule.Geometric, betas);
    }

    /// <summary>A schedule from the caller's β array (copied); every β must satisfy 0 &lt; β &lt; 1.</summary>
    /// <param name="betas">β₁…β_T, at least two values.</param>
    /// <returns>The schedule.</returns>
    public static NoiseSchedule Custom(IReadOnlyList<double> betas) => Restore(BetaSchedule.Custom, betas);

    /// <summary>
    /// <paramref name="count"/> timesteps spread evenly over 0 … T − 1: round(i·(T − 1)/(K − 1)) for i = 0 … K − 1, in
    /// increasing order, always including 0 and T − 1 (K = 1 gives T − 1 alone). The spacing of DDIM's steps and of a
    /// respaced chain.
    /// </summary>
    /// <param name="timesteps">T.</param>
    /// <param name="count">K, 1 ≤ K ≤ T.</param>
    /// <returns>The increasing timesteps.</returns>
    public static int[] EvenlySpacedTimesteps(int timesteps, int count)
    {
        if (count < 1 || count > timesteps)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Between 1 and {timesteps} timesteps can be chosen from {timesteps}.");
        }

        if (count == 1)
        {
            return new[] { timesteps - 1 };
        }

        var result = new int[count];
        for (int i = 0; i < count; i++)
        {
            result[i] = (int)Math.Round((double)i * (timesteps - 1) / (count - 1), MidpointRounding.AwayFromZero);
        }

        return result;
    }

    /// <summary>
    /// Timesteps spaced as Karras et al. 2022 (eq. 5) space noise levels: σ_i = (σ_max^(1/ρ) + i/(K − 1)·(σ_min^(1/ρ) −
    /// σ_max^(1/ρ)))^ρ with σ_t = √((1 − ᾱ_t)/ᾱ_t), σ_min = σ_0 and σ_max = min(σ_{T−1}, 80) (the paper's largest level;
    /// schedules whose last β is clipped reach far larger σ, where all levels would crowd into the last few steps), each
    /// mapped to the timestep of the nearest log σ. T − 1 is always the first step; duplicates are removed, so a short
    /// schedule may give fewer than K. Increasing order.
    /// </summary>
    /// <param name="count">K ≥ 2.</param>
    /// <param name="rho">ρ; 7 in the paper.</param>
    /// <returns>The increasing timesteps.</returns>
    public int[] KarrasTimesteps(int count, double rho = 7.0)
    {
        if (count < 2 || count > Timesteps)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Karras spacing needs between 2 and {Timesteps} steps.");
        }

        if (!(rho > 0) || double.IsInfinity(rho))
        {
            throw new ArgumentOutOfRangeException(nameof(rho), rho, "ρ must be positive and finite.");
        }

        const double SigmaMax = 80;
        var logSigma = new double[Timesteps];
        for (int t = 0; t < Timesteps; t++)
        {
            logSigma[t] = 0.5 * Math.Log((1 - AlphasCumprod[t]) / AlphasCumprod[t]);
        }

        double low = Math.Pow(Math.Exp(logSigma[0]), 1 / rho), high = Math.Pow(Math.Min(Math.Exp(logSigma[^1]), SigmaMax), 1 / rho);
        var chosen = new SortedSet<int> { Timesteps - 1 };
        for (int i = 1; i < count; i++)
        {
            double target = rho * Math.Log(high + ((double)i / (count - 1) * (low - high)));
            int best = 0;
            for (int t = 1; t < Timesteps; t++)
            {
                if (Math.Abs(logSigma[t] - target) < Math.Abs(logSigma[best] - target))
                {
                    best = t;
                }
            }

            chosen.Add(best);
        }

        return chosen.ToArray();
    }

    /// <summary>Rebuilds a saved schedule from its exact β values, keeping the family it was made from.</summary>
    internal static NoiseSchedule Restore(BetaSchedule kind, IReadOnlyList<double> betas)
    {
        ArgumentNullException.ThrowIfNull(betas);
        CheckTimesteps(betas.Count);
        var copy = new double[betas.Count];
        for (int i = 0; i < copy.Length; i++)
        {
            copy[i] = betas[i];
        }

        return new NoiseSchedule(kind, copy);
    }

    private static NoiseSchedule FromAlphaBar(BetaSchedule kind, int timesteps, Func<double, double> alphaBar)
    {
        double a0 = alphaBar(0);
        var betas = new double[timesteps];
        double previous = 1.0;
        for (int i = 0; i < timesteps; i++)
        {
            double current = alphaBar((double)(i + 1) / timesteps) / a0;
            betas[i] = Math.Clamp(1.0 - (current / previous), 0.0, MaxBeta);
            previous = current;
        }

        return new NoiseSchedule(kind, betas);
    }

    private static double Logistic(double x) => 1.0 / (1.0 + Math.Exp(-x));

    private static void CheckTimesteps(int timesteps)
    {
        if (timesteps < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(timesteps), timesteps, "A diffusion needs at least 2 timesteps.");
        }
    }

    /// <summary>Throws unless every β satisfies 0 &lt; β &lt; 1 (the one check of β values, for schedules and model descriptions).</summary>
    internal static void CheckBetas(IReadOnlyList<double> betas)
    {
        for (int i = 0; i < betas.Count; i++)
        {
            double b = betas[i];
            if (!(b > 0.0 && b < 1.0))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(betas),
                    string.Format(CultureInfo.InvariantCulture, "β at index {0} is {1}; every β must satisfy 0 < β < 1 ({2} values given).", i, b, betas.Count));
            }
        }
    }
}
