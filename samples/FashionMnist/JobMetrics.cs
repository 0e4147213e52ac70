using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using static TorchSharp.torch;

namespace FashionMnist;

/// <summary>The numbers the job reports at the end (OUT/metrics.json): bits/dim and Fréchet distance with their context.</summary>
internal static class JobMetrics
{
    // The bound's 1,000 network calls per batch are cheap on a GPU: more images there, for a tighter estimate.
    private static int BoundImages(string device) => device == "cpu" ? 32 : 256;

    // More sampling steps for the Fréchet distance where they are cheap.
    private static int FrechetSteps(string device) => device == "cpu" ? 20 : 50;

    public static void Measure(DiffusionSampler sampler, IDataView train, IDataView test, JobOptions options, double trainingSeconds, TextWriter console, FidInception? inception = null)
    {
        if (inception is not null)
        {
            MeasureInception(sampler, test, options, trainingSeconds, console, inception);
            return;
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var classifierOptions = new FeatureClassifierOptions { ImageColumnName = "Pixels", LabelColumnName = "Label", ImageSize = 28, Epochs = 3, Seed = options.Seed, Device = options.Device };
        string classifierPath = Path.Combine(options.Out, "classifier.bin");
        using var classifier = File.Exists(classifierPath) ? FeatureClassifier.Load(classifierPath) : FeatureClassifier.Train(train, classifierOptions);
        if (!File.Exists(classifierPath))
        {
            classifier.Save(classifierPath);
        }

        double accuracy = classifier.Accuracy(test, classifierOptions);
        int n = options.MetricImages ?? (options.Device == "cpu" ? 200 : 1000);
        var bound = new LikelihoodEvaluator(sampler.Model).Evaluate(test, new LikelihoodOptions { MaxImages = Math.Min(n, BoundImages(options.Device)), BatchSize = BoundImages(options.Device), Seed = options.Seed });

        using var scope = NewDisposeScope();
        var (real, generated, count, samplingOptions) = RealAndGenerated(sampler, test, options, n);
        var quality = SampleQualityReport.Measure(classifier, real[..count], generated, real[count..(2 * count)]);

        var metrics = new Dictionary<string, object>
        {
            ["bits_per_dim"] = bound.BitsPerDim,
            ["bits_per_dim_bound"] = $"the full variational bound over all {bound.Steps} steps (prior + KL terms + discretised decoder), mean of {bound.Images} held-out images",
            ["bits_per_dim_prior"] = bound.Prior,
            ["bits_per_dim_decoder"] = bound.Decoder,
            ["bits_per_dim_kl_sum"] = bound.KlSum,
            ["frechet_distance"] = quality.FrechetDistance,
            ["frechet_floor_two_real_sets"] = quality.FloorDistance,
            ["frechet_images"] = count,
            ["frechet_sampler"] = $"{SchedulerRegistry.ToJson(samplingOptions.Scheduler)}, guidance {samplingOptions.GuidanceScale}",
            ["frechet_features"] = $"penultimate layer ({classifier.FeatureSize}) of the job's own CNN classifier ({classifierPath}); comparable only with the same classifier file and image count",
            ["classifier_test_accuracy"] = accuracy,
            ["generated_mean_max_probability"] = quality.MeanMaxProbability,
            ["trained_steps"] = sampler.Model.TrainedSteps,
            ["training_seconds"] = Math.Round(trainingSeconds, 1),
        };
        File.WriteAllText(Path.Combine(options.Out, "metrics.json"), JsonSerializer.Serialize(metrics, new JsonSerializerOptions { WriteIndented = true }));
        console.WriteLine(FormattableString.Invariant(
            $"Metrics ({clock.Elapsed:mm\\:ss}): {bound.BitsPerDim:F3} bits/dim (full {bound.Steps}-step bound, {bound.Images} images); Fréchet distance {quality.FrechetDistance:F2} (floor {quality.FloorDistance:F2}, {count} images); classifier accuracy {accuracy:P1}; confidence on samples {quality.MeanMaxProbability:F3}."));
    }

    // The same images and seeds as the classifier's distance, measured in pytorch-fid's Inception (grayscale repeated to
    // RGB, as pytorch-fid reads a grayscale PNG); the floor is the FID between the two halves of the real images.
    private static void MeasureInception(DiffusionSampler sampler, IDataView test, JobOptions options, double trainingSeconds, TextWriter console, FidInception inception)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int n = options.MetricImages ?? (options.Device == "cpu" ? 200 : 1000);
        var bound = new LikelihoodEvaluator(sampler.Model).Evaluate(test, new LikelihoodOptions { MaxImages = Math.Min(n, BoundImages(options.Device)), BatchSize = BoundImages(options.Device), Seed = options.Seed });
        using var scope = NewDisposeScope();
        var (real, generated, count, samplingOptions) = RealAndGenerated(sampler, test, options, n);
        var realFeatures = inception.FeaturesOfModelImages(real[..count]);
        var report = InceptionFidReport.Measure(realFeatures, inception.FeaturesOfModelImages(generated));
        double floor = FidStatistics.FromFeatures(realFeatures).FrechetDistanceTo(FidStatistics.FromFeatures(inception.FeaturesOfModelImages(real[count..(2 * count)])));
        var metrics = new Dictionary<string, object>
        {
            ["bits_per_dim"] = bound.BitsPerDim,
            ["bits_per_dim_bound"] = $"the full variational bound over all {bound.Steps} steps (prior + KL terms + discretised decoder), mean of {bound.Images} held-out images",
            ["frechet_distance"] = report.Fid,
            ["frechet_distance_kind"] = "Inception FID",
            ["frechet_floor_two_real_sets"] = floor,
            ["frechet_images"] = count,
            ["frechet_real_images"] = report.RealCount,
            ["frechet_generated_images"] = report.GeneratedCount,
            ["frechet_sampler"] = $"{SchedulerRegistry.ToJson(samplingOptions.Scheduler)}, guidance {samplingOptions.GuidanceScale}",
            ["frechet_features"] = $"pool3 (2048) of pytorch-fid's FID InceptionV3 ({inception.Source}); 28×28 grayscale repeated to RGB and resized to 299×299 bilinearly, as pytorch-fid does with the PNGs; comparable with pytorch-fid numbers of the same image count",
            ["kid"] = report.Kid!.Mean,
            ["kid_std"] = report.Kid.StandardDeviation,
            ["kid_subsets"] = $"{report.Kid.Subsets} subsets of {report.Kid.SubsetSize} (polynomial kernel, unbiased MMD²)",
            ["precision"] = report.Quality!.Precision,
            ["recall"] = report.Quality.Recall,
            ["precision_recall_k"] = report.Quality.NearestNeighbors,
            ["trained_steps"] = sampler.Model.TrainedSteps,
            ["training_seconds"] = Math.Round(trainingSeconds, 1),
        };
        File.WriteAllText(Path.Combine(options.Out, "metrics.json"), JsonSerializer.Serialize(metrics, new JsonSerializerOptions { WriteIndented = true }));
        console.WriteLine(FormattableString.Invariant(
            $"Metrics ({clock.Elapsed:mm\\:ss}): {bound.BitsPerDim:F3} bits/dim (full {bound.Steps}-step bound, {bound.Images} images); {report} (floor: FID of two real sets of {count}: {floor:F3})."));
    }

    private static (Tensor Real, Tensor Generated, int Count, DiffusionSamplerOptions Sampling) RealAndGenerated(DiffusionSampler sampler, IDataView test, JobOptions options, int n)
    {
        var real = IdxImagesOf(test, 2 * n);
        int count = (int)Math.Min(n, real.shape[0] / 2);
        bool conditional = sampler.Model.ClassCount > 0;
        var labels = conditional ? tensor(Enumerable.Range(0, count).Select(i => (long)(i % sampler.Model.ClassCount)).ToArray()) : null;
        var seeds = Enumerable.Range(0, count).Select(i => 1_000_000L + i).ToArray();
        var samplingOptions = sampler.Options.Clone();
        if (samplingOptions.Scheduler is DdimScheduler ddim)
        {
            ddim.Steps = Math.Min(ddim.Steps, FrechetSteps(options.Device));
        }

        return (real, samplingOptions.CreateSamplingLoop().Sample(sampler.Model.Diffusion, seeds, labels), count, samplingOptions);
    }

    private static Tensor IdxImagesOf(IDataView data, int max)
    {
        var rows = data.GetColumn<VBuffer<float>>("Pixels").Take(max).Select(v => v.DenseValues().ToArray()).ToArray();
        var flat = rows.SelectMany(r => r).ToArray();
        using var pixels = tensor(flat, new long[] { rows.Length, 1, 28, 28 });
        return ImageConversion.PixelsToModel(pixels);
    }
}
