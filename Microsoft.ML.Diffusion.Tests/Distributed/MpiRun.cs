using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Distributed;

/// <summary>What a child run printed and how it ended.</summary>
internal sealed record ChildRun(int ExitCode, string Output, string Error, TimeSpan Elapsed)
{
    public string All => Output + Error;

    // Terminal escapes (.NET's console writes keypad-mode sequences when it believes it has a terminal) are dropped.
    public IEnumerable<string> Lines(string prefix) => System.Text.RegularExpressions.Regex.Replace(Output, "\u001b(\\[[0-9;?]*[A-Za-z]|[=>])", string.Empty)
        .Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith(prefix, StringComparison.Ordinal));
}

/// <summary>Runs the test assembly's commands as one plain process or as MPI ranks (mpirun; inconclusive where there is none).</summary>
internal static class MpiRun
{
    public static string RequireMpirun()
    {
        string? found = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);
        if (found is null)
        {
            Assert.Inconclusive("Not run: mpirun is not on PATH. Install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev; .ci/run does it when it is root).");
        }

        return found!;
    }

    /// <summary>mpirun --oversubscribe -np <paramref name="ranks"/> of the test assembly with <paramref name="args"/>.</summary>
    public static ChildRun Ranks(int ranks, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        string mpirun = RequireMpirun();
        var start = new ProcessStartInfo(mpirun);
        foreach (string a in new[] { "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(a);
        }

        foreach (var (name, _) in environment ?? new Dictionary<string, string>())
        {
            start.ArgumentList.Add("-x");
            start.ArgumentList.Add(name);
        }

        start.ArgumentList.Add("dotnet");
        return Run(start, environment, args);
    }

    /// <summary>The test assembly as one plain process (no launcher: a world of 1).</summary>
    public static ChildRun Single(IReadOnlyDictionary<string, string>? environment, params string[] args) => Run(new ProcessStartInfo("dotnet"), environment, args);

    private static ChildRun Run(ProcessStartInfo start, IReadOnlyDictionary<string, string>? environment, string[] args)
    {
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(typeof(MpiRun).Assembly.Location);
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        start.Environment["TERM"] = "dumb";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(180_000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"The child did not end within 180 s: {string.Join(' ', args)}");
        }

        process.WaitForExit();
        return new ChildRun(process.ExitCode, output.Result, error.Result, clock.Elapsed);
    }
}
