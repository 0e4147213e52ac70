using System;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Diffusion.Import;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Import;

/// <summary>
/// diffusers' DDPMScheduler and DDIMScheduler (0.21.0, Data/Diffusers/make_fixture.py): each config in
/// Data/Diffusers/schedulers is mapped by the importer onto our schedule, objective, variance, clipping and scheduler,
/// which must visit the same first timesteps and step from the same sample, model outputs and noise to the same
/// prev_sample.
/// </summary>
[TestClass]
public sealed class DiffusersSchedulerTests
{
    // Samples are O(1) (the v-prediction and sample cases reach ~10); diffusers keeps its schedule in float32, ours in double.
    private const double Tolerance = 1e-4;

    [TestMethod]
    [DataRow("ddpm-linear-small", "DDPMScheduler", PredictionTarget.Noise, VarianceType.FixedSmall, true, 0)]
    [DataRow("ddpm-cosine-learned", "DDPMScheduler", PredictionTarget.Noise, VarianceType.LearnedRange, true, 0)]
    [DataRow("ddpm-large-sample", "DDPMScheduler", PredictionTarget.Start, VarianceType.FixedLarge, false, 0)]
    [DataRow("ddpm-v-trained-betas", "DDPMScheduler", PredictionTarget.Velocity, VarianceType.FixedSmall, true, 0)]
    [DataRow("ddim-leading-v", "DDIMScheduler", PredictionTarget.Velocity, VarianceType.FixedSmall, false, 10)]
    [DataRow("ddim-trailing-clipped", "DDIMScheduler", PredictionTarget.Noise, VarianceType.FixedSmall, true, 20)]
    public void OurMappedSchedulerTakesDiffusersFirstSteps(string name, string className, PredictionTarget objective, VarianceType variance, bool clip, int ddimSteps)
    {
        var settings = DiffusersConfigs.ReadScheduler(DiffusersConfigFile.Read(Path.Combine(DiffusersPipelineTests.Fixture("schedulers"), name + ".json")));
        Assert.AreEqual(className, settings.ClassName);
        Assert.AreEqual(objective, settings.Objective);
        Assert.AreEqual(clip, settings.ClipDenoised);
        var model = new GaussianDiffusionOptions
        {
            ImageHeight = 8,
            ImageWidth = 8,
            Schedule = settings.Family,
            Betas = settings.Betas,
            Objective = settings.Objective,
            Variance = settings.Variance ?? VarianceType.FixedSmall,
            Network = new DiffusersUNetOptions
            {
                Channels = 3,
                LearnedVariance = settings.Variance == VarianceType.LearnedRange,
                BlockOutChannels = new[] { 8 },
                DownBlockTypes = new[] { DiffusersUNetOptions.DownBlock },
                UpBlockTypes = new[] { DiffusersUNetOptions.UpBlock },
                LayersPerBlock = 1,
                NormGroups = 4,
            },
        };
        Assert.AreEqual(variance, model.Variance);
        using var diffusion = model.CreateDiffusion();
        using var scheduler = settings.Scheduler.Clone();
        if (scheduler is DdimScheduler ddim)
        {
            ddim.Steps = ddimSteps; // num_inference_steps of the fixture's run
        }

        scheduler.SetTimesteps(diffusion.Schedule);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var steps = Safetensors.LoadStateDict(Path.Combine(DiffusersPipelineTests.Fixture("schedulers"), "steps.safetensors"));
        var expectedTimesteps = steps[$"{name}.timesteps"].data<long>().Select(t => (int)t).ToArray();
        CollectionAssert.AreEqual(expectedTimesteps, scheduler.Timesteps.Take(expectedTimesteps.Length).ToArray(), "the timesteps visited first");

        var sample = steps[$"{name}.sample"];
        double worst = 0;
        for (int k = 0; k < expectedTimesteps.Length; k++)
        {
            int t = expectedTimesteps[k];
            var time = full(1, t, dtype: int64);
            var prediction = diffusion.PMeanVarianceFromOutput(steps[$"{name}.output{k}"], sample, time, settings.ClipDenoised);
            sample = scheduler.Step(prediction, t, sample, scheduler.UsesStepNoise ? steps[$"{name}.noise{k}"] : null);
            var expected = steps[$"{name}.prev{k}"];
            double difference = (sample - expected).abs().max().item<float>();
            double scale = Math.Max(1, expected.abs().max().item<float>());
            worst = Math.Max(worst, difference / scale);
            Assert.IsLessThan(Tolerance, difference / scale, $"{name}, step {k} (t = {t}): |ours - diffusers| = {difference:E2}");
        }

        Console.WriteLine($"{name}: timesteps {string.Join(", ", expectedTimesteps)}; worst relative difference {worst:E2}");
    }

    [TestMethod]
    public void LinspaceDdimVisitsOurUniformTimesteps()
    {
        // diffusers' DDIM with timestep_spacing "linspace" visits round(linspace(0, T − 1, S)), our uniform spacing, but steps
        // each time to t − ⌊T/S⌋ rather than to the next timestep it visits (999 → 959, then evaluates at 957); ours steps to
        // the next visited timestep, so only the timesteps are compared (README, "Importing diffusers models").
        var settings = DiffusersConfigs.ReadScheduler(DiffusersConfigFile.Read(Path.Combine(DiffusersPipelineTests.Fixture("schedulers"), "ddim-linspace.json")));
        var ddim = (DdimScheduler)settings.Scheduler;
        Assert.AreEqual(TimestepSpacing.Uniform, ddim.Spacing);
        ddim.Steps = 25;
        ddim.SetTimesteps(NoiseSchedule.Custom(settings.Betas));
        using var scope = NewDisposeScope();
        var steps = Safetensors.LoadStateDict(Path.Combine(DiffusersPipelineTests.Fixture("schedulers"), "steps.safetensors"));
        var expected = steps["ddim-linspace.timesteps"].data<long>().Select(t => (int)t).ToArray();
        CollectionAssert.AreEqual(expected, ddim.Timesteps.Take(expected.Length).ToArray());
    }

    [TestMethod]
    public void TheBetaSchedulesAreDiffusersFloat32Values()
    {
        // diffusers: torch.linspace(0.0001, 0.02, 1000, dtype=float32) and linspace(√0.00085, √0.012)², in float32.
        var linear = DiffusersConfigs.ReadScheduler(DiffusersConfigFile.Read(Path.Combine(DiffusersPipelineTests.Fixture("schedulers"), "ddpm-linear-small.json")));
        Assert.AreEqual(1000, linear.Betas.Length);
        Assert.AreEqual((double)0.0001f, linear.Betas[0]);
        Assert.AreEqual((double)0.02f, linear.Betas[^1]);
        Assert.AreEqual(BetaSchedule.Linear, linear.Family);
        var scaled = DiffusersConfigs.ReadScheduler(DiffusersConfigFile.Read(Path.Combine(DiffusersPipelineTests.Fixture("schedulers"), "ddim-leading-v.json")));
        Assert.AreEqual(0.00085, scaled.Betas[0], 1e-9);
        Assert.AreEqual(0.012, scaled.Betas[^1], 1e-9);
        var ddim = (DdimScheduler)scaled.Scheduler;
        Assert.AreEqual(TimestepSpacing.Leading, ddim.Spacing);
        Assert.AreEqual(1, ddim.StepsOffset);
        Assert.AreEqual(50, ddim.Steps, "DDIMPipeline's default of 50 steps");
    }
}
