using System;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>Sample quality of generated images, measured in a <see cref="FeatureClassifier"/>'s feature space.</summary>
/// <param name="FrechetDistance">Fréchet distance between real and generated features.</param>
/// <param name="FloorDistance">The same distance between two disjoint real sets of the same size (what a perfect model would get), or NaN.</param>
/// <param name="MeanMaxProbability">Mean over generated images of the classifier's highest class probability (confidence that they look like some class).</param>
/// <param name="Count">Images per set.</param>
public sealed record SampleQualityReport(double FrechetDistance, double FloorDistance, double MeanMaxProbability, int Count)
{
    /// <summary>Measures generated images against real ones.</summary>
    /// <param name="classifier">The feature network.</param>
    /// <param name="real">Real images in model space (N×C×H×W).</param>
    /// <param name="generated">Generated images in model space (N×C×H×W).</param>
    /// <param name="realHeldOut">Other real images of the same count for the floor, or null.</param>
    /// <returns>The report.</returns>
    public static SampleQualityReport Measure(FeatureClassifier classifier, Tensor real, Tensor generated, Tensor? realHeldOut = null)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(real);
        ArgumentNullException.ThrowIfNull(generated);
        using var scope = NewDisposeScope();
        var realFeatures = classifier.Features(real);
        var generatedFeatures = classifier.Features(generated);
        double distance = Evaluation.FrechetDistance.Compute(realFeatures, generatedFeatures);
        double floor = realHeldOut is null ? double.NaN : Evaluation.FrechetDistance.Compute(realFeatures, classifier.Features(realHeldOut));
        double confidence = classifier.Probabilities(generated).max(1).values.mean().item<float>();
        return new SampleQualityReport(distance, floor, confidence, (int)generated.shape[0]);
    }
}
