using System;
using System.Globalization;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>
/// Sample quality in the feature space of pytorch-fid's FID InceptionV3 (<see cref="FidInception"/>): FID and, where
/// both feature sets are at hand, KID and improved precision/recall. Every number carries the sample counts it was
/// computed from (<see cref="ToString"/> prints them next to each), because FID is biased by the count: compare only
/// numbers of the same counts.
/// </summary>
/// <param name="Fid">The Fréchet Inception distance (d², as papers report it).</param>
/// <param name="RealCount">Real samples (0 where reference statistics did not record it).</param>
/// <param name="GeneratedCount">Generated samples.</param>
/// <param name="Kid">KID, or null where only reference statistics were available.</param>
/// <param name="Quality">Improved precision and recall (k = 3), or null where only reference statistics were available.</param>
public sealed record InceptionFidReport(double Fid, long RealCount, long GeneratedCount, KernelDistance? Kid, PrecisionRecall? Quality)
{
    /// <summary>FID, KID and precision/recall from two feature sets (from <see cref="FidInception.Features"/>).</summary>
    /// <param name="real">N×2048 real features.</param>
    /// <param name="generated">M×2048 generated features.</param>
    /// <param name="kidSubsets">KID subsets (default 100, as torch-fidelity and clean-fid).</param>
    /// <param name="kidSubsetSize">KID subset size (default 1000, capped at the smaller set).</param>
    /// <returns>The report.</returns>
    public static InceptionFidReport Measure(Tensor real, Tensor generated, int kidSubsets = 100, int kidSubsetSize = 1000)
    {
        ArgumentNullException.ThrowIfNull(real);
        ArgumentNullException.ThrowIfNull(generated);
        double fid = FidStatistics.FromFeatures(real).FrechetDistanceTo(FidStatistics.FromFeatures(generated));
        var kid = FeatureMetrics.KernelInceptionDistance(real, generated, kidSubsets, kidSubsetSize);
        var quality = FeatureMetrics.ImprovedPrecisionRecall(real, generated);
        return new InceptionFidReport(fid, real.shape[0], generated.shape[0], kid, quality);
    }

    /// <summary>FID, KID and precision/recall of model-space images (as the library reads and generates them).</summary>
    /// <param name="inception">The network.</param>
    /// <param name="real">Real images, N×C×H×W in [−1, 1].</param>
    /// <param name="generated">Generated images, M×C×H×W in [−1, 1].</param>
    /// <returns>The report.</returns>
    public static InceptionFidReport MeasureImages(FidInception inception, Tensor real, Tensor generated)
    {
        ArgumentNullException.ThrowIfNull(inception);
        using var scope = NewDisposeScope();
        return Measure(inception.FeaturesOfModelImages(real), inception.FeaturesOfModelImages(generated));
    }

    /// <summary>FID of generated features against reference statistics (a pytorch-fid <c>.npz</c>); KID and precision/recall need the real features and are left out.</summary>
    /// <param name="reference">The reference statistics.</param>
    /// <param name="generated">M×2048 generated features.</param>
    /// <returns>The report.</returns>
    public static InceptionFidReport Measure(FidStatistics reference, Tensor generated)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(generated);
        double fid = reference.FrechetDistanceTo(FidStatistics.FromFeatures(generated));
        return new InceptionFidReport(fid, reference.Count, generated.shape[0], null, null);
    }

    /// <summary>The report on one line, each number followed by its sample counts.</summary>
    /// <returns>The text.</returns>
    public override string ToString()
    {
        string counts = string.Create(CultureInfo.InvariantCulture, $"N_real = {(RealCount > 0 ? RealCount.ToString(CultureInfo.InvariantCulture) : "not recorded")}, N_gen = {GeneratedCount}");
        string text = string.Create(CultureInfo.InvariantCulture, $"Inception FID {Fid:F3} ({counts})");
        if (Kid is not null)
        {
            text += string.Create(CultureInfo.InvariantCulture, $"; KID {Kid.Mean:F5} ± {Kid.StandardDeviation:F5} ({counts}; {Kid.Subsets} subsets of {Kid.SubsetSize})");
        }

        if (Quality is not null)
        {
            text += string.Create(CultureInfo.InvariantCulture, $"; precision {Quality.Precision:F3}, recall {Quality.Recall:F3} ({counts}; k = {Quality.NearestNeighbors})");
        }

        return text;
    }
}
