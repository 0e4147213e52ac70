using System;
using System.Linq;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Sampling;

/// <summary>
/// Schedulers as configurations (as diffusers' <c>save_config</c>/<c>from_config</c>): a scheduler written to JSON by name and
/// read back steps exactly as the original; model files written before schedulers had their own settings map onto the same
/// scheduler.
/// </summary>
[TestClass]
public sealed class SchedulerConfigTests
{
    private static readonly long[] Seeds = { 5, 6, 7 };

    [TestMethod]
    public void ASchedulerSavedToJsonAndReloadedStepsIdentically()
    {
        var schedule = NoiseSchedule.Cosine(40);
        foreach (var original in new DiffusionScheduler[]
        {
            new DdpmScheduler(),
            new DdimScheduler { Steps = 7, Eta = 0.3 },
            new DpmSolverScheduler { Steps = 6, Spacing = TimestepSpacing.Karras, SolverOrder = 2, LowerOrderFinal = false },
            new DpmSolverScheduler { Steps = 5, SolverOrder = 1 },
            new EulerAncestralScheduler { Steps = 8, Eta = 0.6, Spacing = TimestepSpacing.Karras },
        })
        {
            string json = SchedulerRegistry.ToJson(original);
            var fields = JsonNode.Parse(json)!.AsObject().ToArray();
            Assert.AreEqual("Name", fields[0].Key, json);
            Assert.AreEqual(original.Name, fields[0].Value!.GetValue<string>(), json);
            Assert.IsFalse(fields.Any(f => f.Key is "UsesStepNoise" or "Timesteps"), "only settings are stored: " + json);
            using var reloaded = SchedulerRegistry.FromJson(json);
            Assert.AreEqual(original.GetType(), reloaded.GetType(), json);
            Assert.AreEqual(json, SchedulerRegistry.ToJson(reloaded), "the same settings");

            using var a = original.Clone();
            a.SetTimesteps(schedule);
            reloaded.SetTimesteps(schedule);
            CollectionAssert.AreEqual(a.Timesteps.ToArray(), reloaded.Timesteps.ToArray(), json);
            using var noise = new SeededNoise(Seeds, new long[] { 1, 4, 4 }, CPU);
            var x = noise.Next();
            var y = x.clone();
            foreach (int t in a.Timesteps)
            {
                using var scope = NewDisposeScope();
                var prediction = Prediction(noise);
                var fresh = noise.Next();
                var nextA = a.Step(prediction, t, x, fresh);
                var nextB = reloaded.Step(prediction, t, y, fresh);
                Assert.IsTrue(nextA.eq(nextB).all().item<bool>(), $"{json}: step at t = {t}");
                x = nextA.MoveToOuterDisposeScope();
                y = nextB.MoveToOuterDisposeScope();
            }
        }
    }

    [TestMethod]
    public void JsonNamesAnUnknownSchedulerAndRejectsBadSettings()
    {
        var unknown = Assert.ThrowsExactly<System.Text.Json.JsonException>(() => SchedulerRegistry.FromJson("{\"Name\":\"no-such\",\"Steps\":3}"));
        StringAssert.Contains(unknown.Message, "no-such");
        Assert.ThrowsExactly<System.Text.Json.JsonException>(() => SchedulerRegistry.FromJson("{\"Steps\":3}"));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => SchedulerRegistry.FromJson("{\"Name\":\"dpm-solver++\",\"SolverOrder\":3}"));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => SchedulerRegistry.FromJson("{\"Name\":\"ddim\",\"Eta\":2}"));
        Assert.IsInstanceOfType<DdimScheduler>(SchedulerRegistry.FromJson("{\"Name\":\"DDIM\"}"), "names are case-insensitive");
    }

    [TestMethod]
    public void OldSamplingSettingsMapOntoTheSchedulerTheyMeant()
    {
        DiffusionScheduler Upgrade(string sampling)
        {
            var node = JsonNode.Parse(sampling)!;
            LegacySamplingSettings.Upgrade(node);
            Assert.IsNull(node["Method"]);
            Assert.IsNull(node["Steps"]);
            return SchedulerRegistry.FromJson(node["Scheduler"]!.ToJsonString());
        }

        var ddim = (DdimScheduler)Upgrade("{\"Method\":\"Ddim\",\"Steps\":4,\"Eta\":0.5,\"GuidanceScale\":2}");
        Assert.AreEqual(4, ddim.Steps);
        Assert.AreEqual(0.5, ddim.Eta);
        Assert.IsInstanceOfType<DdpmScheduler>(Upgrade("{\"Method\":\"Ddpm\",\"Steps\":50,\"Eta\":0}"));
        var dpm = (DpmSolverScheduler)Upgrade("{\"Method\":2,\"SamplerName\":null,\"Steps\":12,\"Eta\":0,\"Spacing\":\"Karras\"}");
        Assert.AreEqual(12, dpm.Steps);
        Assert.AreEqual(TimestepSpacing.Karras, dpm.Spacing);
        Assert.AreEqual(2, dpm.SolverOrder);
        Assert.IsTrue(dpm.LowerOrderFinal, "the old files' DPM-Solver++ always used the first order into t = 0");
        var euler = (EulerAncestralScheduler)Upgrade("{\"Method\":\"Ddim\",\"SamplerName\":\"Euler-A\",\"Steps\":9,\"Eta\":0,\"Spacing\":\"Uniform\"}");
        Assert.AreEqual(9, euler.Steps);
        Assert.AreEqual(1.0, euler.Eta, "the old options' η = 0 meant Euler-ancestral's 1");
        Assert.AreEqual(0.25, ((EulerAncestralScheduler)Upgrade("{\"Method\":\"EulerAncestral\",\"Steps\":9,\"Eta\":0.25}")).Eta);

        var today = JsonNode.Parse("{\"Scheduler\":{\"Name\":\"euler-a\",\"Eta\":0},\"Eta\":0}")!;
        LegacySamplingSettings.Upgrade(today);
        Assert.AreEqual(0.0, SchedulerRegistry.FromJson(today["Scheduler"]!.ToJsonString()) is EulerAncestralScheduler e ? e.Eta : -1, "no hidden rule in today's files");
    }

    [TestMethod]
    public void FirstOrderDpmSolverIsDeterministicDdim()
    {
        // DPM-Solver++(1) is DDIM with η = 0 (Lu et al. 2022): the two formulas agree up to rounding on the same steps.
        using var d = TinyModels.Diffusion(timesteps: 30, seed: 4);
        using var dpm = new SamplingLoop(new DpmSolverScheduler { Steps = 6, SolverOrder = 1 }).Sample(d, Seeds);
        using var ddim = new SamplingLoop(new DdimScheduler { Steps = 6 }).Sample(d, Seeds);
        using var second = new SamplingLoop(new DpmSolverScheduler { Steps = 6 }).Sample(d, Seeds);
        double difference = (dpm - ddim).abs().max().item<float>();
        Assert.IsTrue(difference < 1e-4, $"max |DPM-Solver++(1) − DDIM| = {difference:G3}");
        Assert.IsFalse(second.eq(dpm).all().item<bool>(), "the second order changes the images");
    }

    private static DiffusionPrediction Prediction(SeededNoise noise)
    {
        var start = noise.Next().clamp(-1, 1);
        var eps = noise.Next();
        var mean = noise.Next();
        var logVariance = full(1, -3.0f);
        return new DiffusionPrediction(mean, logVariance.exp(), logVariance, start, eps);
    }
}
