using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Sampling;

[TestClass]
public sealed class SamplerTests
{
    private static readonly long[] Seeds = { 11, 22, 33, 44, 55, 66, 77, 88 };

    [TestMethod]
    public void DdimWithEtaZeroIsDeterministicGivenTheSeed()
    {
        using var d = TinyModels.Diffusion(timesteps: 50);
        var sampler = new SamplingLoop(new DdimScheduler { Steps = 10 });
        using var a = sampler.Sample(d, Seeds[..2]);
        using var b = sampler.Sample(d, Seeds[..2]);
        Assert.IsTrue(a.eq(b).all().item<bool>());
        Assert.IsFalse(a[0].eq(a[1]).all().item<bool>(), "different seeds give different images");
    }

    [TestMethod]
    public void AnImageIsTheSameAloneOrInABatchOfEight()
    {
        using var d = TinyModels.Diffusion(timesteps: 30);
        foreach (var sampler in new[] { new SamplingLoop(new DdimScheduler { Steps = 8, Eta = 0.5 }), new SamplingLoop(new DdpmScheduler()) })
        {
            using var batch = sampler.Sample(d, Seeds);
            for (int i = 0; i < Seeds.Length; i += 3)
            {
                using var alone = sampler.Sample(d, new[] { Seeds[i] });
                Assert.IsTrue(alone[0].eq(batch[i]).all().item<bool>(), $"{sampler.Scheduler.Name}: image {i} differs in a batch");
            }
        }
    }

    [TestMethod]
    public void DdpmAndDdimGiveFiniteImagesForEveryScheduleAndObjective()
    {
        foreach (BetaSchedule schedule in new[] { BetaSchedule.Linear, BetaSchedule.Cosine, BetaSchedule.Sigmoid, BetaSchedule.Geometric })
        {
            foreach (PredictionTarget objective in Enum.GetValues<PredictionTarget>())
            {
                foreach (VarianceType variance in Enum.GetValues<VarianceType>())
                {
                    using var d = TinyModels.Diffusion(timesteps: 10, schedule: schedule, objective: objective, variance: variance);
                    using var ddpm = new SamplingLoop(new DdpmScheduler()).Sample(d, Seeds[..2]);
                    using var ddim = new SamplingLoop(new DdimScheduler { Steps = 4 }).Sample(d, Seeds[..2]);
                    foreach (var images in new[] { ddpm, ddim })
                    {
                        CollectionAssert.AreEqual(new long[] { 2, 1, 8, 8 }, images.shape);
                        Assert.IsTrue(images.isfinite().all().item<bool>(), $"{schedule}/{objective}/{variance}");
                        Assert.IsTrue(images.abs().max().item<float>() <= 1.0f + 1e-6f, "clipped x̂₀ keeps images in [−1, 1]");
                    }
                }
            }
        }
    }

    [TestMethod]
    public void DdimWithEtaOneAndAllStepsIsAncestralSampling()
    {
        // σ_t of DDIM with η = 1 equals the posterior standard deviation, and both draw the same per-image noise in the same
        // order, so the two chains agree path by path (up to rounding), not only in distribution.
        using var d = TinyModels.Diffusion(timesteps: 25, schedule: BetaSchedule.Cosine);
        using var ddpm = new SamplingLoop(new DdpmScheduler()).Sample(d, Seeds[..4]);
        using var ddim = new SamplingLoop(new DdimScheduler { Steps = 25, Eta = 1 }).Sample(d, Seeds[..4]);
        double maxDiff = (ddpm - ddim).abs().max().item<float>();
        Assert.IsTrue(maxDiff < 1e-4, $"max |DDPM − DDIM(η=1)| = {maxDiff}");
        using var ddimDeterministic = new SamplingLoop(new DdimScheduler { Steps = 25, Eta = 0 }).Sample(d, Seeds[..4]);
        Assert.IsTrue((ddpm - ddimDeterministic).abs().max().item<float>() > 1e-2, "η = 0 must differ from ancestral sampling");
    }

    [TestMethod]
    public void TrajectoryStartsWithNoiseAndEndsWithTheImage()
    {
        using var d = TinyModels.Diffusion(timesteps: 40);
        using var trajectory = new SamplingTrajectory(every: 3);
        using var images = new SamplingLoop(new DdimScheduler { Steps = 10 }).Sample(d, Seeds[..2], trajectory: trajectory);
        Assert.AreEqual(39, trajectory.Timesteps[0]);
        Assert.AreEqual(-1, trajectory.Timesteps[^1]);
        Assert.AreEqual(4 + 1, trajectory.States.Count); // steps 0, 3, 6, 9 and the final image
        Assert.IsTrue(trajectory.States[^1].eq(images.cpu()).all().item<bool>());
        Assert.IsTrue(trajectory.States[0].std().item<float>() > 0.5f, "x_T is unit-variance noise");
    }

    [TestMethod]
    public void DdimStepsMustFitTheModel()
    {
        using var d = TinyModels.Diffusion(timesteps: 10);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new SamplingLoop(new DdimScheduler { Steps = 11 }).Sample(d, Seeds[..1]));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DdimScheduler { Eta = 1.5 });
        Assert.ThrowsExactly<ArgumentException>(() => new SamplingLoop(new DdpmScheduler()).Sample(d, Array.Empty<long>()));
    }
}
