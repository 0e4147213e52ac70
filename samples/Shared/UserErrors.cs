using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using Microsoft.ML.Diffusion;

namespace DiffusionSamples;

/// <summary>
/// What a user can cause — a bad setting, a missing or damaged file, a folder in use, too little memory — ends a sample
/// program with one line ("Error: …") and exit code 1, never a stack trace. The library's messages name its own
/// properties; a program passes the names of its options (Dim → --dim), and the line names the option instead. What is
/// not in this list is a defect of the program, and keeps its stack trace.
/// </summary>
internal static class UserErrors
{
    /// <summary>The exit code of a run that failed on what the user gave it.</summary>
    public const int Failed = 1;

    /// <summary>
    /// Runs <paramref name="body"/>; a user's error is printed as one line and returns <see cref="Failed"/>.
    /// </summary>
    /// <param name="console">Where the line goes.</param>
    /// <param name="options">The program's option for each library parameter name (e.g. "BatchSize" → "--batch").</param>
    /// <param name="body">The program.</param>
    /// <returns>The body's exit code, or <see cref="Failed"/>.</returns>
    public static int Run(TextWriter console, IReadOnlyDictionary<string, string> options, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception ex) when (Describe(ex, options) is string line)
        {
            console.WriteLine();
            console.WriteLine($"Error: {line}");
            return Failed;
        }
    }

    /// <summary>The one line for an exception a user can cause, or null for a defect.</summary>
    /// <param name="exception">The exception.</param>
    /// <param name="options">The program's option for each library parameter name.</param>
    /// <returns>The line (without "Error: "), or null.</returns>
    public static string? Describe(Exception exception, IReadOnlyDictionary<string, string> options)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (TrainingMemoryEstimate.DescribeNativeOutOfMemory(exception) is string native)
        {
            return $"Out of memory: {native}. Lower --batch, the image size or the network's width.";
        }

        return exception switch
        {
            InsufficientMemoryException => FirstLine(exception.Message),
            OutOfMemoryException => $"Out of memory: {FirstLine(exception.Message)}",
            ArgumentException argument => Named(argument, options),
            IOException or InvalidDataException or UnauthorizedAccessException or InvalidOperationException or NotSupportedException or FormatException or OverflowException => FirstLine(exception.Message),
            ExternalException => $"libtorch: {FirstLine(exception.Message)}",
            _ => null,
        };
    }

    /// <summary>Refuses an output folder that is a file, naming the option, before anything else is done with it.</summary>
    /// <param name="output">The --out value.</param>
    public static void CheckOutputFolder(string output)
    {
        if (File.Exists(output))
        {
            throw new IOException($"--out '{output}' is a file, not a folder: choose a folder (it is created if missing).");
        }
    }

    /// <summary>
    /// The memory check of a program, before anything is written: null when the estimate fits the memory available (or
    /// that is unknown, or the device is not the CPU), else the line that says the sizes and what to lower.
    /// </summary>
    /// <param name="estimate">The library's estimate of the run.</param>
    /// <param name="device">The device option.</param>
    /// <param name="settings">The options that set the sizes, with their values, e.g. "--batch 64, --size 32, --dim 32".</param>
    /// <returns>The line (without "Error: "), or null.</returns>
    public static string? CheckMemory(TrainingMemoryEstimate estimate, string device, string settings)
    {
        ArgumentNullException.ThrowIfNull(estimate);
        if (device != "cpu" || TrainingMemoryEstimate.AvailableBytes() is not long available || estimate.TotalBytes <= available)
        {
            return null;
        }

        return $"Training with {settings} needs {estimate}, but {TrainingMemoryEstimate.Format(available)} of memory is available: lower the largest of them.";
    }

    // "U-Net Dim 100000 is too wide … (Parameter 'Dim')" → "--dim: U-Net Dim 100000 is too wide …".
    private static string Named(ArgumentException exception, IReadOnlyDictionary<string, string> options)
    {
        string message = FirstLine(exception.Message);
        int parameter = message.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        if (parameter > 0)
        {
            message = message[..parameter];
        }

        return exception.ParamName is string name && options.TryGetValue(name, out string? option) ? $"{option}: {message}" : message;
    }

    private static string FirstLine(string message) =>
        message.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).FirstOrDefault() ?? string.Empty;
}
