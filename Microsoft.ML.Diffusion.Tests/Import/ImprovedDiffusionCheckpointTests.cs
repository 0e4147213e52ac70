using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Runtime;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Import;
using Microsoft.ML.Diffusion.Tests.MLNet;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Import;

/// <summary>
/// Checkpoints of openai's improved-diffusion written by Data/PyTorch/make_improved_diffusion_fixture.py with the
/// reference's own UNetModel, GaussianDiffusion and SpacedDiffusion (PyTorch 1.13, run once): two tiny random networks,
/// their outputs for fixed inputs, and the first DDPM and DDIM steps of the reference's samplers; and of openai's
/// guided-diffusion written by Data/PyTorch/make_guided_diffusion_fixture.py with its own UNetModel.
/// </summary>
[TestClass]
public sealed class ImprovedDiffusionCheckpointTests
{
    // Network A: 8×8 RGB, widths 32 and 64, attention at 4×4 with 2 heads, 3 classes, learned sigmas, scale-shift norm
    // (stored in float16). Network B: widths 32 and 32, 1 head, unconditional, no scale-shift norm (float32).
    private const string FlagsA = "--image_size 8 --num_channels 32 --num_res_blocks 1 --attention_resolutions 4 --num_heads 2 --learn_sigma True --class_cond True";
    private const string FlagsB = "--image_size 8 --num_channels 32 --num_res_blocks 1 --attention_resolutions 4 --num_heads 1 --use_scale_shift_norm False";

    // Outputs are O(1); measured differences are printed by each test.
    private const double Tolerance = 1e-4;

    private const string Improved = "improved-diffusion-reference.pt";
    private const string Guided = "guided-diffusion-reference.pt";
    private static readonly Dictionary<string, Hashtable> References = new();

    [TestMethod]
    public void BothNetworksGiveTheReferenceOutputs()
    {
        // No respacing and no rescaling: the network sees the raw timesteps 0, 17, 39, as the reference's did.
        using var a = Import("improved-diffusion-a-fp16.pt", OptionsA(FlagsA + " --diffusion_steps 40 --rescale_timesteps False"));
        using var b = Import("improved-diffusion-b.pt", OptionsB(FlagsB + " --diffusion_steps 40 --rescale_timesteps False"));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var outputA = a.Model.Diffusion.Model.forward(Reference("x"), Reference("t"), Reference("y"));
        var outputB = b.Model.Diffusion.Model.forward(Reference("x"), Reference("t"), null);
        double differenceA = MaxDifference(outputA, Reference("a_output"));
        double differenceB = MaxDifference(outputB, Reference("b_output"));
        Console.WriteLine($"max |ours - improved-diffusion|: A (float16 file) {differenceA:E2}, B {differenceB:E2}");
        Assert.IsLessThan(Tolerance, differenceA);
        Assert.IsLessThan(Tolerance, differenceB);
        Assert.IsGreaterThan(0.5, Reference("a_output").abs().max().item<float>(), "the reference output is not trivially small");
        Assert.AreEqual(6L, outputA.shape[1], "learned sigmas double the output channels");
    }

    [TestMethod]
    public void AGuidedDiffusionNetworkWithItsAdditionsGivesTheReferenceOutput()
    {
        // Residual blocks that resample, heads 16 channels wide, the new attention order, 3 classes, learned sigmas (float16 file).
        var options = ImprovedDiffusionImportOptions.Parse(
            "--image_size 8 --num_channels 32 --channel_mult 1,1 --num_res_blocks 1 --attention_resolutions 8,4 --num_head_channels 16 " +
            "--resblock_updown True --use_new_attention_order True --learn_sigma True --class_cond True --use_fp16 True",
            ImprovedDiffusionCodebase.GuidedDiffusion);
        options.NumClasses = 3;
        using var sampler = Import("guided-diffusion-c-fp16.pt", options);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var output = sampler.Model.Diffusion.Model.forward(Reference("x", Guided), Reference("t", Guided), Reference("y", Guided));
        double difference = MaxDifference(output, Reference("c_output", Guided));
        Console.WriteLine($"max |ours - guided-diffusion|: {difference:E2}");
        Assert.IsLessThan(Tolerance, difference);
        Assert.IsGreaterThan(0.5, Reference("c_output", Guided).abs().max().item<float>(), "the reference output is not trivially small");

        // The same weights read in the old attention order give another output: the order is tested.
        options.UseNewAttentionOrder = false;
        using var legacy = Import("guided-diffusion-c-fp16.pt", options);
        Assert.IsGreaterThan(1e-3, MaxDifference(legacy.Model.Diffusion.Model.forward(Reference("x", Guided), Reference("t", Guided), Reference("y", Guided)), Reference("c_output", Guided)));
    }

    [TestMethod]
    public void TheDdpmAndDdimStepsOfARespacedLearnedSigmaModelMatchTheReference()
    {
        // Cosine over 40 steps respaced to 10, timesteps rescaled to 1000/40 (improved-diffusion's default), learned range.
        using var sampler = Import("improved-diffusion-a-fp16.pt", OptionsA(FlagsA + " --diffusion_steps 40 --noise_schedule cosine --timestep_respacing 10"));
        var diffusion = sampler.Model.Diffusion;
        CollectionAssert.AreEqual(Reference("a_betas").data<double>().ToArray(), diffusion.Schedule.Betas.ToArray(), "their respaced cosine β values, exactly");
        var shape = (ImprovedDiffusionUNetOptions)sampler.Model.Network;
        CollectionAssert.AreEqual(Reference("a_timestep_map").data<long>().ToArray().Select(t => (int)t).ToArray(), shape.TimestepMap!.ToArray());
        Assert.AreEqual(1000.0 / 40, shape.TimestepScale);
        Assert.AreEqual(VarianceType.LearnedRange, diffusion.Variance);
        CheckSteps(diffusion, "a", Reference("y"));
        CheckSteps(diffusion, "amid", Reference("y"));
    }

    [TestMethod]
    public void TheStepsOfAnXStartModelWithFixedLargeVarianceMatchTheReference()
    {
        // Linear over 50 steps (β scaled by 1000/50), x₀ prediction, fixed large variance, no rescaling.
        using var full = Import("improved-diffusion-b.pt", OptionsB(FlagsB + " --diffusion_steps 50 --predict_xstart True --rescale_timesteps False"));
        CollectionAssert.AreEqual(Reference("b_betas").data<double>().ToArray(), full.Model.Diffusion.Schedule.Betas.ToArray(), "their linear β values, exactly");
        Assert.AreEqual(VarianceType.FixedLarge, full.Model.Diffusion.Variance);
        Assert.AreEqual(PredictionTarget.Start, full.Model.Diffusion.Objective);
        CheckSteps(full.Model.Diffusion, "b", null);
        CheckSteps(full.Model.Diffusion, "bmid", null);

        // Their "ddim10" stride: every 5th of the 50 steps.
        using var ddim = Import("improved-diffusion-b.pt", OptionsB(FlagsB + " --diffusion_steps 50 --predict_xstart True --rescale_timesteps False --timestep_respacing ddim10 --use_ddim True"));
        var map = ((ImprovedDiffusionUNetOptions)ddim.Model.Network).TimestepMap!;
        CollectionAssert.AreEqual(Reference("bddim_timestep_map").data<long>().ToArray().Select(t => (int)t).ToArray(), map.ToArray());
        Assert.AreEqual(10, ((DdimScheduler)ddim.Options.Scheduler).Steps, "--use_ddim: DDIM over every step of the respaced model");
        CheckSteps(ddim.Model.Diffusion, "bddim", null);
    }

    [TestMethod]
    public void TheReadmeFlagsOfThePublishedCheckpointsGiveTheReferenceNetworks()
    {
        var flags = Encoding.UTF8.GetString(Reference("readme_flags").data<byte>().ToArray()).Split('\n');
        var counts = Reference("readme_counts").data<long>().ToArray();
        Assert.HasCount(counts.Length, flags);
        for (int i = 0; i < flags.Length; i++)
        {
            var model = ImprovedDiffusionImportOptions.Parse(flags[i]).DescribeModel();
            model.Validate();
            Assert.AreEqual(counts[i], model.Network.CountParameters(), $"the parameters of their create_model for: {flags[i]}");
        }

        var cifar = ImprovedDiffusionImportOptions.Parse(flags[1]).DescribeModel();
        Assert.AreEqual(4000, cifar.Betas!.Count);
        Assert.AreEqual(VarianceType.LearnedRange, cifar.Variance);
        Assert.AreEqual(1000.0 / 4000, ((ImprovedDiffusionUNetOptions)cifar.Network).TimestepScale, "improved-diffusion rescales timesteps by default");
        var imagenet = (ImprovedDiffusionUNetOptions)ImprovedDiffusionImportOptions.Parse(flags[2]).DescribeModel().Network;
        Assert.AreEqual(1000, imagenet.ClassCount);
        Assert.AreEqual(1.0, imagenet.TimestepScale, "--rescale_timesteps False");

        // guided-diffusion's README (Data/PyTorch/make_guided_diffusion_fixture.py ran its create_model on them).
        var guidedFlags = Encoding.UTF8.GetString(Reference("readme_flags", Guided).data<byte>().ToArray()).Split('\n');
        var guidedCounts = Reference("readme_counts", Guided).data<long>().ToArray();
        Assert.HasCount(guidedCounts.Length, guidedFlags);
        for (int i = 0; i < guidedFlags.Length; i++)
        {
            var model = ImprovedDiffusionImportOptions.Parse(guidedFlags[i], ImprovedDiffusionCodebase.GuidedDiffusion).DescribeModel();
            model.Validate();
            Assert.AreEqual(guidedCounts[i], model.Network.CountParameters(), $"the parameters of guided-diffusion's create_model for: {guidedFlags[i]}");
            Assert.AreEqual(1.0, ((ImprovedDiffusionUNetOptions)model.Network).TimestepScale, "guided-diffusion does not rescale timesteps by default");
        }

        var large = (ImprovedDiffusionUNetOptions)ImprovedDiffusionImportOptions.Parse(guidedFlags[4] + " --timestep_respacing 250", ImprovedDiffusionCodebase.GuidedDiffusion).DescribeModel().Network;
        Assert.AreEqual(128, large.LevelWidths[0], "their ½ multiplier at 512×512");
        Assert.AreEqual(250, large.TimestepMap!.Count);
    }

    [TestMethod]
    public void OurParameterNamesAreTheFilesAndTheCountIsKnownBeforeBuilding()
    {
        using var scope = NewDisposeScope();
        var keys = PyTorchUnpickler.UnpickleStateDict(Fixture("improved-diffusion-a-fp16.pt")).Keys.Cast<string>().OrderBy(k => k, StringComparer.Ordinal).ToArray();
        var network = (ImprovedDiffusionUNetOptions)OptionsA(FlagsA).DescribeModel().Network;
        using var built = new ImprovedDiffusionUNet(network);
        CollectionAssert.AreEqual(keys, built.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray(), "one to one: the reference's state-dict keys");
        CollectionAssert.Contains(keys, "middle_block.1.qkv.weight");

        // guided-diffusion's layouts (no reference outputs here: the parameter count and a forward pass of the right shape).
        var guided = ImprovedDiffusionImportOptions.Parse(
            "--image_size 16 --num_channels 64 --channel_mult 1,2 --num_res_blocks 1 --attention_resolutions 8,4 --num_head_channels 32 " +
            "--resblock_updown True --use_new_attention_order True --learn_sigma True --class_cond True", ImprovedDiffusionCodebase.GuidedDiffusion);
        guided.NumClasses = 5;
        foreach (var options in new[] { network, (ImprovedDiffusionUNetOptions)guided.DescribeModel().Network })
        {
            using var net = new ImprovedDiffusionUNet(options);
            Assert.AreEqual(options.CountParameters(), net.ParameterCount);
        }

        using var updown = new ImprovedDiffusionUNet((ImprovedDiffusionUNetOptions)guided.DescribeModel().Network);
        CollectionAssert.Contains(updown.state_dict().Keys.ToArray(), "input_blocks.3.0.in_layers.2.weight", "the downsampling residual block");
        using var noGrad = no_grad();
        var output = updown.forward(randn(2, 3, 16, 16), tensor(new long[] { 0, 999 }), tensor(new long[] { 4, 5 }));
        CollectionAssert.AreEqual(new long[] { 2, 6, 16, 16 }, output.shape);
    }

    [TestMethod]
    public void AnImportedSamplerTransformsAndRoundTripsThroughAModelFile()
    {
        var mlContext = new MLContext(seed: 1);
        var options = OptionsA(FlagsA + " --diffusion_steps 40 --noise_schedule cosine --timestep_respacing 4");
        options.Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 4 }, MicroBatchSize = 2 }; // no padding to 8 images
        using var sampler = Import("improved-diffusion-a-fp16.pt", options);
        var seeds = MLNetTestData.Seeds(mlContext, 1, 2);
        string path = Path.Combine(Path.GetTempPath(), $"improved-diffusion-{Guid.NewGuid():N}.zip");
        try
        {
            sampler.Save(mlContext, path);
            using var loaded = DiffusionSampler.Load(new MLContext(), path);
            var before = MLNetTestData.Pixels(sampler.Transform(seeds));
            var after = MLNetTestData.Pixels(loaded.Transform(seeds));
            Assert.HasCount(2, after);
            Assert.HasCount(3 * 8 * 8, before[0]);
            for (int i = 0; i < before.Count; i++)
            {
                CollectionAssert.AreEqual(before[i], after[i], "the loaded sampler's images, bit for bit");
            }
            var shape = (ImprovedDiffusionUNetOptions)loaded.Model.Network;
            Assert.AreEqual(ImprovedDiffusionUNetOptions.KindName, shape.Kind);
            CollectionAssert.AreEqual(new[] { 0, 13, 26, 39 }, shape.TimestepMap!.ToArray(), "their respacing of 40 steps into 4");
            Assert.AreEqual(3, loaded.Model.ClassCount);
            Assert.AreEqual(4, ((DdimScheduler)loaded.Options.Scheduler).Steps);

            // Labels condition the images (their label embedding); a 16-bit copy of the network generates too.
            var one = loaded.Generate(1, label: 1)[0].GetBGRPixels;
            var two = loaded.Generate(1, label: 2)[0].GetBGRPixels;
            CollectionAssert.AreNotEqual(one.ToArray(), two.ToArray(), "another label, another image from the same seed");
            Assert.HasCount(1, loaded.Generate(1, new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 2 }, Precision = Precision.BFloat16, MicroBatchSize = 1 }));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void FlagsThatDoNotFitTheFileAreRefusedNamingTheKeyAndBothShapes()
    {
        var wider = Assert.ThrowsExactly<InvalidDataException>(() => Import("improved-diffusion-b.pt", OptionsB(FlagsB.Replace("--num_channels 32", "--num_channels 64", StringComparison.Ordinal))));
        StringAssert.Contains(wider.Message, "'time_embed.0.weight' has shape [128, 32]");
        StringAssert.Contains(wider.Message, "--num_channels 64");
        StringAssert.Contains(wider.Message, "give [256, 64]");
        StringAssert.Contains(wider.Message, "improved-diffusion-b.pt");

        var unconditional = Assert.ThrowsExactly<InvalidDataException>(() => Import("improved-diffusion-a-fp16.pt", OptionsA(FlagsA.Replace(" --class_cond True", string.Empty, StringComparison.Ordinal))));
        StringAssert.Contains(unconditional.Message, "label_emb.weight");
        StringAssert.Contains(unconditional.Message, "--class_cond True");

        var fixedSigma = Assert.ThrowsExactly<InvalidDataException>(() => Import("improved-diffusion-a-fp16.pt", OptionsA(FlagsA.Replace("--learn_sigma True", "--learn_sigma False", StringComparison.Ordinal))));
        StringAssert.Contains(fixedSigma.Message, "'out.2.weight' has shape [6, 32, 3, 3]");

        var moreBlocks = Assert.ThrowsExactly<InvalidDataException>(() => Import("improved-diffusion-b.pt", OptionsB(FlagsB.Replace("--num_res_blocks 1", "--num_res_blocks 2", StringComparison.Ordinal))));
        StringAssert.Contains(moreBlocks.Message, "has no 'input_blocks.");
    }

    [TestMethod]
    public void DamagedAndForeignFilesAreRefusedNamingTheFile()
    {
        Assert.ThrowsExactly<FileNotFoundException>(() => Import("missing.pt", OptionsB(FlagsB)));

        // A denoising-diffusion-pytorch checkpoint: a valid PyTorch file of another library.
        var foreign = Assert.ThrowsExactly<InvalidDataException>(() => Import("model-1.pt", OptionsB(FlagsB)));
        StringAssert.Contains(foreign.Message, "no 'input_blocks.0.0.weight'");
        StringAssert.Contains(foreign.Message, "model-1.pt");

        string damaged = Path.Combine(Path.GetTempPath(), $"damaged-{Guid.NewGuid():N}.pt");
        try
        {
            var bytes = File.ReadAllBytes(Fixture("improved-diffusion-b.pt"));
            File.WriteAllBytes(damaged, bytes[..(bytes.Length / 2)]);
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => ImprovedDiffusionCheckpoint.Import(new MLContext(), damaged, OptionsB(FlagsB)));
            StringAssert.Contains(ex.Message, damaged);
            File.WriteAllBytes(damaged, Encoding.ASCII.GetBytes("not a checkpoint"));
            ex = Assert.ThrowsExactly<InvalidDataException>(() => ImprovedDiffusionCheckpoint.Import(new MLContext(), damaged, FlagsB + " --channel_mult 1,1", ImprovedDiffusionCodebase.GuidedDiffusion));
            StringAssert.Contains(ex.Message, damaged);
        }
        finally
        {
            File.Delete(damaged);
        }
    }

    [TestMethod]
    public void UnknownRefusedAndMalformedFlagsAreRefusedByName()
    {
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--num_channles 64")).Message, "--num_channles");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--large_size 256 --small_size 64")).Message, "--large_size");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--classifier_scale 1.0", ImprovedDiffusionCodebase.GuidedDiffusion)).Message, "classifier");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--resblock_updown True")).Message, "GuidedDiffusion");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--learn_sigma maybe")).Message, "--learn_sigma");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--image_size")).Message, "--image_size");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--num_channels 64 --num_channels 32")).Message, "twice");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--noise_schedule sigmoid").DescribeModel()).Message, "sigmoid");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--image_size 48").DescribeModel()).Message, "--image_size 48");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ImprovedDiffusionImportOptions.Parse("--timestep_respacing ddim999").DescribeModel()).Message, "ddim999");

        // Training and script flags are accepted and change nothing; quotes are removed as a shell would.
        var accepted = ImprovedDiffusionImportOptions.Parse("--lr 1e-4 --batch_size 128 --use_kl True --schedule_sampler loss-second-moment --timestep_respacing \"\" --dropout=0.3");
        Assert.AreEqual(string.Empty, accepted.TimestepRespacing);
        Assert.AreEqual(0.3, accepted.Dropout);
        Assert.IsFalse(ImprovedDiffusionImportOptions.Parse(string.Empty, ImprovedDiffusionCodebase.GuidedDiffusion).RescaleTimesteps, "guided-diffusion does not rescale by default");
    }

    /// <summary>
    /// Compares p_θ and one DDPM and one DDIM step at the fixture's timestep <c>prefix_t</c> with the reference's: first from
    /// the reference network's own output (the sampler maths alone, ≤ 1e-4), then end to end from our network's output.
    /// End to end, x̂₀ = x_t/√ᾱ_t − κ_t ε̂ with κ_t = √(1/ᾱ_t − 1) magnifies the networks' float32 difference (≈ 4e-6) by
    /// κ_t (≈ 1000 at the last step of a cosine schedule), so there the tolerance is 1e-4 · max(1, κ_t).
    /// </summary>
    private static void CheckSteps(GaussianDiffusion diffusion, string prefix, Tensor? labels)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = Reference("x");
        var t = Reference(prefix + "_t");
        int step = (int)t[0].item<long>();
        double kappa = Math.Sqrt((1 / diffusion.Schedule.AlphasCumprod[step]) - 1);
        var output = diffusion.ModelOutput(x, t, labels);
        double outputDifference = MaxDifference(output, Reference(prefix + "_model_output"));
        var fromTheirs = Differences(diffusion, diffusion.PMeanVarianceFromOutput(Reference(prefix + "_model_output"), x, t, clipDenoised: true), prefix, step);
        var fromOurs = Differences(diffusion, diffusion.PMeanVariance(x, t, labels, clipDenoised: true), prefix, step);
        Console.WriteLine($"{prefix} (t = {step}, κ = {kappa:F1}): network output {outputDifference:E2}; max |ours - improved-diffusion| from their output: "
            + string.Join(", ", fromTheirs.Select(d => $"{d.Key} {d.Value:E2}")) + "; end to end: " + string.Join(", ", fromOurs.Select(d => $"{d.Key} {d.Value:E2}")));
        Assert.IsLessThan(Tolerance, outputDifference, "the network's output for the mapped, rescaled timestep");
        foreach (var (name, difference) in fromTheirs)
        {
            Assert.IsLessThan(Tolerance, difference, name + " from their network's output");
        }

        foreach (var (name, difference) in fromOurs)
        {
            Assert.IsLessThan(Tolerance * Math.Max(1, kappa), difference, name + " end to end");
        }
    }

    private static Dictionary<string, double> Differences(GaussianDiffusion diffusion, DiffusionPrediction prediction, string prefix, int step)
    {
        var x = Reference("x");
        using var ddpm = new DdpmScheduler();
        ddpm.SetTimesteps(diffusion.Schedule);
        using var ddim = new DdimScheduler { Steps = diffusion.Timesteps };
        ddim.SetTimesteps(diffusion.Schedule);
        return new Dictionary<string, double>
        {
            ["mean"] = MaxDifference(prediction.Mean, Reference(prefix + "_mean")),
            ["log variance"] = MaxDifference(prediction.LogVariance.expand_as(x), Reference(prefix + "_log_variance")),
            ["x̂₀"] = MaxDifference(prediction.PredictedStart, Reference(prefix + "_pred_xstart")),
            ["DDPM step"] = MaxDifference(ddpm.Step(prediction, step, x, Reference("noise")), Reference(prefix + "_ddpm_sample")),
            ["DDIM step"] = MaxDifference(ddim.Step(prediction, step, x, null), Reference(prefix + "_ddim_sample")),
        };
    }

    // The fixture's networks are improved-diffusion's UNetModel built directly (its script has no 8×8 size), with channel
    // multipliers (1, 2) and (1, 1) and, for A, 3 classes: set on the options, as their script has no flags for them.
    private static ImprovedDiffusionImportOptions OptionsA(string flags)
    {
        var options = ImprovedDiffusionImportOptions.Parse(flags);
        options.ChannelMult = "1,2";
        options.NumClasses = 3;
        return options;
    }

    private static ImprovedDiffusionImportOptions OptionsB(string flags)
    {
        var options = ImprovedDiffusionImportOptions.Parse(flags);
        options.ChannelMult = "1,1";
        return options;
    }

    private static DiffusionSampler Import(string name, ImprovedDiffusionImportOptions options) =>
        ImprovedDiffusionCheckpoint.Import(new MLContext(), Fixture(name), options);

    private static double MaxDifference(Tensor ours, Tensor theirs)
    {
        CollectionAssert.AreEqual(theirs.shape, ours.shape, "shapes");
        return (ours.to(float32) - theirs).abs().max().item<float>();
    }

    private static Tensor Reference(string key, string file = Improved)
    {
        lock (References)
        {
            if (!References.TryGetValue(file, out var loaded))
            {
                // Loaded once for all tests, outside any test's dispose scope.
                loaded = PyTorchUnpickler.UnpickleStateDict(Fixture(file));
                foreach (var value in loaded.Values)
                {
                    ((Tensor)value!).DetachFromDisposeScope();
                }

                References[file] = loaded;
            }

            return (Tensor)(loaded[key] ?? throw new KeyNotFoundException(key));
        }
    }

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Data", "PyTorch", name);
}
