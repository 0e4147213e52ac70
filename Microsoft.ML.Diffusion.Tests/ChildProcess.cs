using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.Tests;

/// <summary>
/// The test assembly's entry point: "load-model FILE SEED…" loads a model file in this fresh process with
/// <c>mlContext.Model.Load</c> (no registration call) and prints the SHA-256 of each seed's generated pixels;
/// "run-tests [--category C] [--row R]" runs tests of this assembly with only the .NET runtime (no SDK, no test host):
/// how the device tests run on a GPU machine (see <see cref="DirectTestRunner"/>).
/// </summary>
public static class ChildProcess
{
    public static int Main(string[] args)
    {
        if (Onnx.OnnxPipelineCommand.TryRun(args, out int onnxCode))
        {
            return onnxCode;
        }

        if (args.Length >= 2 && args[0] == "load-model")
        {
            var mlContext = new MLContext();
            var model = mlContext.Model.Load(args[1], out _);
            var seeds = args.Skip(2).Select(a => new SeedRow { Seed = int.Parse(a, CultureInfo.InvariantCulture) }).ToArray();
            var output = model.Transform(mlContext.Data.LoadFromEnumerable(seeds));
            foreach (var hash in MLNetTestData.PixelHashes(output))
            {
                Console.WriteLine(hash);
            }

            return 0;
        }

        if (args.Length >= 1 && args[0] == "run-tests")
        {
            return DirectTestRunner.Run(args.Skip(1).ToArray(), Console.Out);
        }

        if (Reliability.ReliabilityCommands.TryRun(args, out int code))
        {
            return code;
        }

        if (Distributed.DistributedCommands.TryRun(args, out code))
        {
            return code;
        }

        Console.Error.WriteLine("usage: load-model FILE SEED... | run-tests [--category C] [--row R] | " + Reliability.ReliabilityCommands.Usage + " | " + Distributed.DistributedCommands.Usage);
        return 2;
    }

    /// <summary>Runs this assembly in a child process and returns its standard output lines.</summary>
    public static string[] Run(params string[] args)
    {
        string assembly = typeof(ChildProcess).Assembly.Location;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(assembly);
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        string stdout = process.StandardOutput.ReadToEnd();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"child process exited with {process.ExitCode}: {stderr}");
        }

        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }
}
