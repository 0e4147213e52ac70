using System;
using System.IO;
using ImportModel;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Import;

/// <summary>
/// samples/ImportModel: <c>diffusers FOLDER --output MODEL.zip [--grid PNG]</c> on the fixture pipelines, and
/// <c>improved-diffusion FILE --flags "..." --output MODEL.zip</c> on the improved-diffusion fixture.
/// </summary>
[TestClass]
public sealed class ImportModelCommandLineTests
{
    [TestMethod]
    public void TheDiffusersSubcommandWritesAModelFileAndAGrid()
    {
        string directory = Path.Combine(Path.GetTempPath(), $"import-model-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        try
        {
            string model = Path.Combine(directory, "model.zip"), grid = Path.Combine(directory, "grid.png");
            using var console = new StringWriter();
            int code = ImportModelCommand.Run(new[] { "diffusers", DiffusersPipelineTests.Fixture("ddpm-class-tiny"), "--output", model, "--grid", grid, "--count", "3", "--ddim-steps", "2", "--seed", "7" }, console);
            Assert.AreEqual(0, code, console.ToString());
            StringAssert.Contains(console.ToString(), "703,750 parameters");
            using var loaded = DiffusionSampler.Load(new MLContext(), model);
            Assert.IsInstanceOfType<DiffusersUNet>(loaded.Model.Diffusion.Model);
            Assert.AreEqual(2, ((DdimScheduler)loaded.Options.Scheduler).Steps, "--ddim-steps is the saved model's sampler too");
            var png = File.ReadAllBytes(grid);
            CollectionAssert.AreEqual(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void BadCommandLinesExitWith2AndRefusedFoldersWith1NamingTheFile()
    {
        using var unknown = new StringWriter();
        Assert.AreEqual(2, ImportModelCommand.Run(new[] { "glide", "model.pt" }, unknown));
        StringAssert.Contains(unknown.ToString(), "Unknown format 'glide'");
        StringAssert.Contains(unknown.ToString(), "diffusers");
        StringAssert.Contains(unknown.ToString(), "improved-diffusion");

        using var noOutput = new StringWriter();
        Assert.AreEqual(2, ImportModelCommand.Run(new[] { "diffusers", DiffusersPipelineTests.Fixture("ddpm-tiny") }, noOutput));
        StringAssert.Contains(noOutput.ToString(), "--output is required");

        using var refused = new StringWriter();
        string model = Path.Combine(Path.GetTempPath(), $"never-{Guid.NewGuid():N}.zip");
        Assert.AreEqual(1, ImportModelCommand.Run(new[] { "diffusers", DiffusersPipelineTests.Fixture("schedulers"), "--output", model }, refused));
        StringAssert.Contains(refused.ToString(), Path.Combine("unet", "config.json"));
        Assert.IsFalse(File.Exists(model), "no model file is written for a refused folder");
    }

    [TestMethod]
    public void TheImprovedDiffusionSubcommandWritesAModelFileAndRefusesFlagsThatDoNotFit()
    {
        // The unconditional fixture network (widths 32, 32; one head; no scale-shift norm) described with guided-diffusion's
        // flags, which can state its channel multipliers: the two code bases name their parameters alike.
        const string flags = "--image_size 8 --num_channels 32 --channel_mult 1,1 --num_res_blocks 1 --attention_resolutions 4 --num_heads 1 --use_scale_shift_norm False --diffusion_steps 40";
        string checkpoint = Path.Combine(AppContext.BaseDirectory, "Data", "PyTorch", "improved-diffusion-b.pt");
        string directory = Path.Combine(Path.GetTempPath(), $"import-model-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        try
        {
            string model = Path.Combine(directory, "model.zip"), grid = Path.Combine(directory, "grid.png");
            using var console = new StringWriter();
            int code = ImportModelCommand.Run(new[] { "improved-diffusion", checkpoint, "--flags", flags, "--guided", "--output", model, "--grid", grid, "--count", "2", "--ddim-steps", "2" }, console);
            Assert.AreEqual(0, code, console.ToString());
            using var loaded = DiffusionSampler.Load(new MLContext(), model);
            Assert.IsInstanceOfType<ImprovedDiffusionUNet>(loaded.Model.Diffusion.Model);
            Assert.AreEqual(40, loaded.Model.Diffusion.Timesteps);
            Assert.IsTrue(File.Exists(grid));

            using var wider = new StringWriter();
            string refusedModel = Path.Combine(directory, "refused.zip");
            Assert.AreEqual(1, ImportModelCommand.Run(new[] { "improved-diffusion", checkpoint, "--flags", flags.Replace("--num_channels 32", "--num_channels 64", StringComparison.Ordinal), "--guided", "--output", refusedModel }, wider), wider.ToString());
            StringAssert.Contains(wider.ToString(), "improved-diffusion-b.pt");
            Assert.IsFalse(File.Exists(refusedModel), "no model file is written for a refused checkpoint");

            using var noFlags = new StringWriter();
            Assert.AreEqual(2, ImportModelCommand.Run(new[] { "improved-diffusion", checkpoint, "--output", refusedModel }, noFlags));
            StringAssert.Contains(noFlags.ToString(), "--flags is required");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
