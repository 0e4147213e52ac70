using System;
using System.Diagnostics;
using System.IO;
using System.Text.Json;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Samples;

[TestClass]
public sealed class BenchmarkSmokeTests
{
    [TestMethod]
    public void TheBenchmarkRunsAndPrintsValidJson()
    {
        // Only that it runs and reports: timing is never asserted in tests.
        string configuration = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)))!;
        string root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", ".."));
        string dll = Path.Combine(root, "benchmarks", "Microsoft.ML.Diffusion.Benchmarks", "bin", configuration, "net10.0", "Microsoft.ML.Diffusion.Benchmarks.dll");
        Assert.IsTrue(File.Exists(dll), dll);
        foreach (string phase in new[] { "train", "ddim" })
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in new[] { "exec", dll, "--config", "S", "--phase", phase, "--batch", "2", "--steps", "2", "--warmup", "1", "--json" })
            {
                start.ArgumentList.Add(a);
            }

            using var process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            string error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            Assert.AreEqual(0, process.ExitCode, error);
            using var json = JsonDocument.Parse(output.Trim().Split('\n')[^1]);
            var report = json.RootElement;
            foreach (string key in new[] { "median_seconds", "min_seconds", "max_seconds", "images_per_second", "peak_rss_mib", "params" })
            {
                Assert.IsTrue(report.GetProperty(key).GetDouble() > 0, key);
            }

            Assert.AreEqual(phase, report.GetProperty("phase").GetString());
            Assert.AreEqual(721_185, report.GetProperty("params").GetInt64(), "config S is dim 16, mults (1, 2, 4)");
        }
    }
}
