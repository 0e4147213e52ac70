using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

[TestClass]
public sealed class MilestoneTrainingTests
{
    private string directory = null!;

    [TestInitialize]
    public void CreateFolder() => directory = Directory.CreateTempSubdirectory("mldiffusion-milestones-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(directory, recursive: true);

    [TestMethod]
    public void MilestonesArriveEveryNStepsAndAtTheEndWithWholeRunProgress()
    {
        var context = new MLContext(seed: 1);
        var options = MLNetTestData.Options(steps: 3);
        options.LogEvery = 1;
        options.CheckpointDirectory = directory;
        var reports = new List<TrainingProgress>();
        options.Progress = new SyncProgress<TrainingProgress>(reports.Add);
        var milestones = new List<int>();
        using var sampler = MilestoneTraining.Fit(context, MLNetTestData.Patterns(context), options, every: 2, m =>
        {
            milestones.Add(m.Model.TrainedSteps);
            Assert.HasCount(2, m.Generate(2), "a milestone's sampler generates");
        });

        CollectionAssert.AreEqual(new[] { 2, 3 }, milestones);
        Assert.AreEqual(3, sampler.Model.TrainedSteps);
        CollectionAssert.AreEqual(new[] { 1, 2, 3 }, reports.Select(r => r.Step).ToArray());
        Assert.IsTrue(reports.All(r => r.TotalSteps == 3), "progress counts against the whole run");
        Assert.IsTrue(reports.Zip(reports.Skip(1)).All(p => p.Second.Elapsed >= p.First.Elapsed), "elapsed time runs on across milestones");
        Assert.AreEqual(3, options.TrainSteps, "the caller's options are not changed");
        Assert.IsFalse(options.Resume);
        Assert.IsNull(options.WarmupSteps);
    }

    [TestMethod]
    public void BadUseIsRefusedBeforeTraining()
    {
        var context = new MLContext(seed: 1);
        var data = MLNetTestData.Patterns(context);
        var options = MLNetTestData.Options(steps: 5);
        var noFolder = Assert.ThrowsExactly<ArgumentException>(() => MilestoneTraining.Fit(context, data, options, 2, _ => { }));
        StringAssert.Contains(noFolder.Message, "CheckpointDirectory");

        options.CheckpointDirectory = directory;
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => MilestoneTraining.Fit(context, data, options, 0, _ => { }));

        // An earlier run's checkpoint is never silently trained over.
        File.WriteAllBytes(Path.Combine(directory, "checkpoint-00000004.ckpt"), Array.Empty<byte>());
        var earlier = Assert.ThrowsExactly<InvalidOperationException>(() => MilestoneTraining.Fit(context, data, options, 2, _ => { }));
        StringAssert.Contains(earlier.Message, "step 4");
        StringAssert.Contains(earlier.Message, "Resume");
    }
}
