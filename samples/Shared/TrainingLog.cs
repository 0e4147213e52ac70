using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Training;

namespace DiffusionSamples;

/// <summary>
/// OUT/training-log.csv (step, loss, lr, images/s), kept so that no interruption loses a row: rows are appended and
/// flushed one by one, and the file is never rewritten in place. When a resumed run must drop rows (those after the
/// checkpoint it continues from, which it trains again), the rows it keeps are written to a temporary file that is
/// flushed to the disk and renamed over the log: a kill at any moment leaves either the old log or the new one.
/// </summary>
internal sealed class TrainingLog : IDisposable
{
    /// <summary>The first line of the log.</summary>
    public const string Header = "step,loss,lr,images_per_second";

    private readonly string path;
    private StreamWriter? writer;

    private TrainingLog(string path, IReadOnlyList<TrainingProgress> rows)
    {
        this.path = path;
        Rows = rows;
    }

    /// <summary>Gets the rows kept from an earlier run (empty for a new log).</summary>
    public IReadOnlyList<TrainingProgress> Rows { get; }

    /// <summary>
    /// Opens the log, keeping the rows of steps up to <paramref name="keepUpTo"/> (0: none, a new run) of an existing
    /// one; the file is created with the first row.
    /// </summary>
    /// <param name="path">The log's path.</param>
    /// <param name="keepUpTo">The last step whose rows are kept.</param>
    /// <returns>The open log.</returns>
    public static TrainingLog Open(string path, int keepUpTo)
    {
        if (!File.Exists(path))
        {
            return new TrainingLog(path, Array.Empty<TrainingProgress>());
        }

        string text = File.ReadAllText(path);
        string[] lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var keptLines = new List<string>();
        var rows = new List<TrainingProgress>();
        foreach (string line in lines.Skip(1))
        {
            if (Parse(line.TrimEnd('\r')) is TrainingProgress row && row.Step <= keepUpTo)
            {
                keptLines.Add(line.TrimEnd('\r'));
                rows.Add(row);
            }
        }

        // Append to the file as it is when it already holds exactly these rows, completely written.
        bool asItIs = lines.Length > 0 && lines[0].TrimEnd('\r') == Header && keptLines.Count == lines.Length - 1 && text.EndsWith('\n');
        if (!asItIs)
        {
            string temporary = path + ".tmp";
            try
            {
                using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
                {
                    using (var w = new StreamWriter(stream, leaveOpen: true))
                    {
                        w.NewLine = "\n";
                        w.WriteLine(Header);
                        foreach (string line in keptLines)
                        {
                            w.WriteLine(line);
                        }
                    }

                    stream.Flush(flushToDisk: true);
                }

                File.Move(temporary, path, overwrite: true);
            }
            catch
            {
                File.Delete(temporary);
                throw;
            }
        }

        return new TrainingLog(path, rows);
    }

    /// <summary>Appends a row and flushes it to the operating system (a killed process loses no written row).</summary>
    /// <param name="p">The progress report.</param>
    public void Append(TrainingProgress p)
    {
        ArgumentNullException.ThrowIfNull(p);
        if (writer is null)
        {
            bool header = !File.Exists(path) || new FileInfo(path).Length == 0;
            writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { NewLine = "\n" };
            if (header)
            {
                writer.WriteLine(Header);
            }
        }

        writer.WriteLine(FormattableString.Invariant($"{p.Step},{p.Loss:G6},{p.LearningRate:G6},{p.ImagesPerSecond:F2}"));
        writer.Flush();
    }

    /// <summary>Closes the log.</summary>
    public void Dispose() => writer?.Dispose();

    private static TrainingProgress? Parse(string line)
    {
        string[] f = line.Split(',');
        return f.Length == 4
            && int.TryParse(f[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int step)
            && double.TryParse(f[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double loss)
            && double.TryParse(f[2], NumberStyles.Float, CultureInfo.InvariantCulture, out double lr)
            && double.TryParse(f[3], NumberStyles.Float, CultureInfo.InvariantCulture, out double rate)
            ? new TrainingProgress(step, 0, loss, lr, rate, TimeSpan.Zero, TimeSpan.Zero, 0)
            : null;
    }
}
