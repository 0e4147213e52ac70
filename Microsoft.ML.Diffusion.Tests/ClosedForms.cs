using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Schedules;

namespace Microsoft.ML.Diffusion.Tests;

/// <summary>Terms of the variational bound in closed form, computed on the host in double precision.</summary>
internal static class ClosedForms
{
    private static readonly double Ln2 = Math.Log(2);

    /// <summary>β rising from 0.02 to 0.2 over 10 steps: ᾱ_T ≈ 0.31, far enough from 0 for the prior term to be large.</summary>
    public static double[] ModerateBetas => Enumerable.Range(0, 10).Select(i => 0.02 + (0.02 * i)).ToArray();

    /// <summary>
    /// L_T = KL(N(√ᾱ_T x₀, (1 − ᾱ_T) I) ‖ N(0, I)) in bits/dim, averaged over the pixels:
    /// ½(−ln(1 − ᾱ_T) + (1 − ᾱ_T) + ᾱ_T x₀² − 1)/ln 2.
    /// </summary>
    public static double Prior(NoiseSchedule schedule, float[] pixels)
    {
        double a = schedule.AlphasCumprod[^1];
        return pixels.Average(x => 0.5 * (-Math.Log(1 - a) + (1 - a) + (a * x * x) - 1)) / Ln2;
    }

    /// <summary>
    /// L_t (t ≥ 1, 0-based) of a model that predicts x̂₀ = 0 with the posterior's own variance β̃_t: the posterior means differ
    /// by c₁x₀, so L_t = c₁² x₀² / (2β̃_t) / ln 2, averaged over the pixels (whatever x_t is).
    /// </summary>
    public static double KlOfZeroStartPrediction(NoiseSchedule schedule, int t, float[] pixels)
    {
        double c1 = schedule.PosteriorMeanCoef1[t];
        return pixels.Average(x => c1 * c1 * x * x) / (2 * schedule.PosteriorVariance[t]) / Ln2;
    }
}
