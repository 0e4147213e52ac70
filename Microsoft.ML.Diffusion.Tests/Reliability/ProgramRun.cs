using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>
/// A program of samples/ or benchmarks/ run as a user runs it, in a process of its own, watched: its exit code, all it
/// wrote, its wall time and its peak resident memory (VmHWM, read every 20 ms; the process is killed, and the test fails,
/// when it passes the bound or the time limit, so that a regression cannot take the machine's memory with it).
/// </summary>
internal sealed record ProgramRun(int ExitCode, string Output, double Seconds, double PeakMiB)
{
    /// <summary>Gets the lines a stack trace would show ("   at …", "Unhandled exception.").</summary>
    public string[] StackTraceLines => Output.Split('\n').Where(l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal) || l.Contains("Unhandled exception", StringComparison.Ordinal)).ToArray();

    /// <summary>The folder trainer through the test assembly's <c>folder-trainer</c> command.</summary>
    public static ProgramRun FolderTrainer(double maxMiB, TimeSpan limit, params string[] args) =>
        Start(new[] { "exec", typeof(ProgramRun).Assembly.Location, "folder-trainer" }.Concat(args), maxMiB, limit);

    /// <summary>A program of benchmarks/ (built with the tests), by its project folder's name; null when it is not built here.</summary>
    public static ProgramRun? Benchmark(string project, double maxMiB, TimeSpan limit, params string[] args)
    {
        string configuration = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)))!;
        string root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", ".."));
        string dll = Path.Combine(root, "benchmarks", project, "bin", configuration, "net10.0", project + ".dll");
        return File.Exists(dll) ? Start(new[] { "exec", dll }.Concat(args), maxMiB, limit) : null;
    }

    /// <summary>The SHA-256 of every file under the folders (by path): to show that a case changed none of them.</summary>
    public static SortedDictionary<string, string> Snapshot(params string[] folders)
    {
        var files = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (string folder in folders.Where(Directory.Exists))
        {
            foreach (string file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
            {
                files[file] = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));
            }
        }

        return files;
    }

    private static ProgramRun Start(IEnumerable<string> arguments, double maxMiB, TimeSpan limit)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.Environment["OMP_NUM_THREADS"] = "1";
        foreach (string a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        var clock = Stopwatch.StartNew();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        double peak = 0;
        string? killed = null;
        while (!process.WaitForExit(20))
        {
            peak = Math.Max(peak, ReadPeakMiB(process));
            if (peak > maxMiB)
            {
                killed = string.Create(CultureInfo.InvariantCulture, $"over {maxMiB} MiB of resident memory");
            }
            else if (clock.Elapsed > limit)
            {
                killed = $"still running after {limit}";
            }

            if (killed is not null)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                Assert.Fail($"{string.Join(' ', arguments.Skip(2))}: {killed}; it wrote:\n{Text(output)}");
            }
        }

        process.WaitForExit();
        return new ProgramRun(process.ExitCode, Text(output), clock.Elapsed.TotalSeconds, peak);
    }

    // VmHWM of a running process (0 where /proc is not there: the time limit still holds).
    private static double ReadPeakMiB(Process process)
    {
        try
        {
            string? line = File.ReadLines($"/proc/{process.Id}/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            return line is null ? 0 : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is not null)
        {
            lock (output)
            {
                output.AppendLine(line);
            }
        }
    }

    private static string Text(StringBuilder output)
    {
        lock (output)
        {
            return output.ToString();
        }
    }
}
