using System;
using System.IO;
using ImportModel;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Import;

/// <summary>samples/ImportModel: <c>diffusers FOLDER --output MODEL.zip [--grid PNG]</c> on the fixture pipelines.</summary>
[TestClass]
public sealed class DiffusersCommandLineTests
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
        Assert.AreEqual(2, ImportModelCommand.Run(new[] { "improved-diffusion", "model.pt" }, unknown));
        StringAssert.Contains(unknown.ToString(), "Unknown format 'improved-diffusion'");
        StringAssert.Contains(unknown.ToString(), "diffusers");

        using var noOutput = new StringWriter();
        Assert.AreEqual(2, ImportModelCommand.Run(new[] { "diffusers", DiffusersPipelineTests.Fixture("ddpm-tiny") }, noOutput));
        StringAssert.Contains(noOutput.ToString(), "--output is required");

        using var refused = new StringWriter();
        string model = Path.Combine(Path.GetTempPath(), $"never-{Guid.NewGuid():N}.zip");
        Assert.AreEqual(1, ImportModelCommand.Run(new[] { "diffusers", DiffusersPipelineTests.Fixture("schedulers"), "--output", model }, refused));
        StringAssert.Contains(refused.ToString(), Path.Combine("unet", "config.json"));
        Assert.IsFalse(File.Exists(model), "no model file is written for a refused folder");
    }
}
