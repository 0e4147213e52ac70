using System;
using System.Linq;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Training;

/// <summary>
/// The gradient of one step of the training loop, read from the network after the step (the loop leaves it in place),
/// against references computed here from the same images, timesteps and noise.
/// </summary>
[TestClass]
public sealed class GradientTests : OneThreadTests
{
    private const int Seed = 17;
    private const int Timesteps = 20;

    [TestMethod]
    public void TheLoopsGradientIsThatOfTheBatchMeanLoss()
    {
        // Checks the reference itself: one batch of 8, no chunks.
        using var images = Images(8);
        var loop = GradientOfOneStep(Options(batch: 8), images);
        var reference = ReferenceGradient(images, chunks: new[] { 8 });
        AssertClose(reference, loop, "batch 8");
    }

    [TestMethod]
    public void AccumulatedMicroStepsGiveTheGradientOfOneBatchOfAllTheirImages()
    {
        // 2 accumulation steps of 4 images = the gradient of the mean loss over all 8 images (each micro-step draws its own
        // timesteps and noise, in turn).
        using var images = Images(8);
        var options = Options(batch: 4);
        options.GradientAccumulationSteps = 2;
        var accumulated = GradientOfOneStep(options, images);
        AssertClose(ReferenceGradient(images, chunks: new[] { 4, 4 }), accumulated, "2×4 accumulated vs one batch of 8");

        var single = Options(batch: 4);
        var halfOnly = GradientOfOneStep(single, images);
        Assert.IsTrue(MaxDifference(accumulated, halfOnly) > 1e-3 * MaxAbs(accumulated), "the second micro-step must count");
    }

    [TestMethod]
    public void ChunkedBatchesGiveTheGradientOfTheWholeBatch()
    {
        using var images = Images(8);
        var options = Options(batch: 8);
        options.MicroBatchSize = 3; // chunks of 3, 3 and 2, weighted by their share of the batch
        var chunked = GradientOfOneStep(options, images);
        AssertClose(ReferenceGradient(images, chunks: new[] { 3, 3, 2 }), chunked, "chunks of 3 vs one batch of 8");
    }

    [TestMethod]
    public void ClippingScalesTheGradientToTheMaximumNorm()
    {
        using var images = Images(8);
        var plain = GradientOfOneStep(Options(batch: 8), images);
        double norm = Norm(plain);
        const double MaxNorm = 0.01;
        Assert.IsTrue(norm > 10 * MaxNorm, $"the unclipped norm {norm} must exceed the limit for this test to mean anything");

        var options = Options(batch: 8);
        options.GradientClip = MaxNorm;
        var clipped = GradientOfOneStep(options, images);
        Assert.AreEqual(MaxNorm, Norm(clipped), MaxNorm * 1e-4, "the global norm after clipping");
        AssertClose(plain.Select(g => g * (MaxNorm / norm)).ToArray(), clipped, "clipping keeps the direction");

        options.GradientClip = 10 * norm;
        AssertClose(plain, GradientOfOneStep(options, images), "a limit above the norm changes nothing");
    }

    [TestMethod]
    public void HorizontalFlipMirrorsImagesLeftToRight()
    {
        // An image symmetric left–right but not top–bottom: a left–right flip changes nothing, any other flip would.
        using var symmetric = zeros(8, 1, 8, 8);
        symmetric[.., .., ..4, ..] = 1;
        symmetric[.., .., 4.., ..] = -1;
        symmetric[.., .., .., 0] = 0.5;
        symmetric[.., .., .., 7] = 0.5;
        var flip = Options(batch: 8);
        flip.RandomHorizontalFlip = true;
        AssertClose(GradientOfOneStep(Options(batch: 8), symmetric), GradientOfOneStep(flip, symmetric), "a left–right symmetric image", exact: true);

        // The left/right split pattern is not symmetric: flipped copies change the gradient.
        using var split = TinyModels.Patterns()[1].unsqueeze(0).repeat(8, 1, 1, 1);
        var unflipped = GradientOfOneStep(Options(batch: 8), split);
        var flipped = GradientOfOneStep(flip, split);
        Assert.IsTrue(MaxDifference(unflipped, flipped) > 1e-3 * MaxAbs(unflipped), "some images of the batch must be flipped");
        using var mirrored = split.flip(3);
        var allMirrored = GradientOfOneStep(Options(batch: 8), mirrored);
        Assert.IsTrue(MaxDifference(allMirrored, flipped) > 1e-3 * MaxAbs(allMirrored), "not every image is flipped");
    }

    private static DiffusionTrainerOptions Options(int batch) => new()
    {
        BatchSize = batch,
        TrainSteps = 1,
        LearningRate = 1e-3,
        WarmupSteps = 0,
        GradientClip = 0,
        EmaDecay = 0,
        LogEvery = 100,
        Network = TinyModels.Options(),
    };

    // N distinct images in [−1, 1].
    private static Tensor Images(int n)
    {
        using var generator = new Generator(3, CPU);
        return (rand(new long[] { n, 1, 8, 8 }, generator: generator) * 2) - 1;
    }

    private static Tensor[] GradientOfOneStep(DiffusionTrainerOptions options, Tensor images)
    {
        using var d = TinyModels.Diffusion(timesteps: Timesteps, seed: 4);
        using var data = new TrainingImages(images.clone(), null, 0, null);
        new DiffusionTrainingLoop(d, options.Training, _ => { }, _ => { }).Run(data, Seed, "test");
        return d.parameters().Select(p => p.grad!.clone()).ToArray();
    }

    // The gradient of the mean loss over all images, in the order the loop reads them, with the timesteps and noise the
    // loop draws: its noise generator is seeded with the run seed and each chunk draws t, then ε, for its images; its data
    // order is a permutation drawn from a generator seeded with seed ^ 0x5DEECE66D.
    private static Tensor[] ReferenceGradient(Tensor images, int[] chunks)
    {
        using var d = TinyModels.Diffusion(timesteps: Timesteps, seed: 4);
        d.Model.train();
        using var orderGenerator = new Generator(unchecked((ulong)(Seed ^ 0x5DEECE66DL)), CPU);
        using var order = randperm(images.shape[0], generator: orderGenerator);
        using var noiseGenerator = new Generator(Seed, CPU);
        using var scope = NewDisposeScope();
        var ordered = images.index_select(0, order)[..chunks.Sum()];
        var t = new Tensor[chunks.Length];
        var noise = new Tensor[chunks.Length];
        for (int i = 0; i < chunks.Length; i++)
        {
            t[i] = randint(0, Timesteps, new long[] { chunks[i] }, dtype: int64, generator: noiseGenerator);
            noise[i] = randn(new long[] { chunks[i], 1, 8, 8 }, generator: noiseGenerator);
        }

        d.LossPerSample(ordered, cat(t, 0), cat(noise, 0)).mean().backward();
        return d.parameters().Select(p => p.grad!.clone().DetachFromDisposeScope()).ToArray();
    }

    private static double Norm(Tensor[] gradient) => Math.Sqrt(gradient.Sum(g => g.square().sum().item<float>()));

    private static double MaxAbs(Tensor[] gradient) => gradient.Max(g => g.abs().max().item<float>());

    private static double MaxDifference(Tensor[] a, Tensor[] b) => a.Zip(b, (x, y) => (x - y).abs().max().item<float>()).Max();

    private static void AssertClose(Tensor[] expected, Tensor[] actual, string what, bool exact = false)
    {
        Assert.HasCount(expected.Length, actual);
        double difference = MaxDifference(expected, actual);
        double scale = MaxAbs(expected);
        Assert.IsTrue(scale > 0, $"{what}: the gradient is zero");
        Assert.IsTrue(exact ? difference == 0 : difference <= 1e-4 * scale, $"{what}: max |difference| {difference:G3} for max |gradient| {scale:G3}");
    }
}
