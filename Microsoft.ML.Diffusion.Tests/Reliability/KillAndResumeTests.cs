using System.IO;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

[TestClass]
public sealed class KillAndResumeTests
{
    [TestMethod]
    public void TrainingKilledAtFiveRandomMomentsAndResumedEndsWithTheUninterruptedWeights()
    {
        string root = Directory.CreateTempSubdirectory("mldiffusion-kill-").FullName;
        try
        {
            string expected = KillAndResume.Uninterrupted(Path.Combine(root, "straight"), steps: 24);
            var report = KillAndResume.Interrupted(Path.Combine(root, "killed"), steps: 24, kills: 5, seed: 12);
            Assert.AreEqual(5, report.Kills, report.ToString());
            Assert.IsEmpty(report.Problems, report.ToString());
            Assert.IsGreaterThan(0, report.CheckpointsChecked, report.ToString());
            Assert.AreEqual(expected, report.FinalWeights, report.ToString());
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
