using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;

namespace Microsoft.ML.Diffusion.Tests.Reliability;

/// <summary>How a file is damaged.</summary>
internal enum DamageKind
{
    /// <summary>1–4 single-bit flips at random offsets.</summary>
    Flip,

    /// <summary>The file cut at a random length (0 to length − 1).</summary>
    Truncate,

    /// <summary>A random range of 1–4096 bytes set to zero.</summary>
    Zero,
}

/// <summary>What loading a damaged file did.</summary>
internal enum DamageOutcome
{
    /// <summary>It loaded, and what it loaded is identical to the undamaged file's content.</summary>
    Identical,

    /// <summary>It was refused with an <see cref="InvalidDataException"/> whose message names the file.</summary>
    Refused,

    /// <summary>It loaded with different content that the format cannot detect (allowed only where a target says so).</summary>
    UndetectableChange,

    /// <summary>It loaded with different content: damage went through unnoticed.</summary>
    SilentlyDifferent,

    /// <summary>Refused with an <see cref="InvalidOperationException"/> naming the file: written by a run with other settings.</summary>
    RefusedAsOtherSettings,

    /// <summary>Refused with an <see cref="InvalidDataException"/> that does not name the file.</summary>
    Unnamed,

    /// <summary>Any other exception type.</summary>
    OtherException,
}

/// <summary>A file format under test: writes one damaged copy and loads it.</summary>
internal interface IDamageTarget
{
    /// <summary>Gets the target's name, for the table.</summary>
    string Name { get; }

    /// <summary>Gets the undamaged file's bytes.</summary>
    byte[] Original { get; }

    /// <summary>Gets the file name the damaged copies are written to (the error must name it).</summary>
    string CasePath { get; }

    /// <summary>Loads <see cref="CasePath"/> and returns a digest of everything that was loaded.</summary>
    string Load();

    /// <summary>Whether a load that differs from the original is acceptable for this damage (the format has no checksum there).</summary>
    bool IsUndetectable(DamageCase damage, string digest);

    /// <summary>Gets the byte ranges that half of the flips and zeroed ranges are aimed at (null: the whole file).</summary>
    (int Start, int Length)[]? Focus { get; }

    /// <summary>Turns damaged bytes into the file to write (a hostile target recomputes its checksums here).</summary>
    byte[] Finish(byte[] damaged);
}

/// <summary>One damaged copy.</summary>
internal sealed record DamageCase(int Index, DamageKind Kind, string Description, byte[] Bytes, int FirstChangedOffset);

/// <summary>The tally of a campaign over one target.</summary>
internal sealed class DamageReport
{
    public DamageReport(string target, int bytes)
    {
        Target = target;
        Bytes = bytes;
    }

    public string Target { get; }

    public int Bytes { get; }

    public Dictionary<(DamageKind Kind, DamageOutcome Outcome), int> Counts { get; } = new();

    public List<string> Failures { get; } = new();

    /// <summary>Gets how many refusals each kind of message had (the message with digits and the file name removed).</summary>
    public Dictionary<string, int> Refusals { get; } = new();

    public double MaxMilliseconds { get; set; }

    public long MaxAllocatedBytes { get; set; }

    public int Cases => Counts.Values.Sum();

    public int Count(DamageOutcome outcome) => Counts.Where(c => c.Key.Outcome == outcome).Sum(c => c.Value);

    public int Count(DamageKind kind, DamageOutcome outcome) => Counts.TryGetValue((kind, outcome), out int n) ? n : 0;

    /// <summary>Cases whose outcome breaks the guarantee (silent changes, unnamed or other exceptions).</summary>
    public int Bad => Count(DamageOutcome.SilentlyDifferent) + Count(DamageOutcome.Unnamed) + Count(DamageOutcome.OtherException);

    public string Summary()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{Target} ({Bytes:N0} bytes): {Cases} cases");
        foreach (DamageKind kind in Enum.GetValues<DamageKind>())
        {
            text.Append(CultureInfo.InvariantCulture, $"\n  {kind,-9}");
            foreach (DamageOutcome outcome in Enum.GetValues<DamageOutcome>())
            {
                text.Append(CultureInfo.InvariantCulture, $" {outcome} {Count(kind, outcome)};");
            }
        }

        text.Append(CultureInfo.InvariantCulture, $"\n  slowest case {MaxMilliseconds:F0} ms; most managed bytes allocated by one case {MaxAllocatedBytes / 1048576.0:F1} MiB");
        foreach (var refusal in Refusals.OrderByDescending(r => r.Value).Take(12))
        {
            text.Append(CultureInfo.InvariantCulture, $"\n  refused {refusal.Value,4}× {refusal.Key}");
        }

        foreach (string failure in Failures.Take(20))
        {
            text.Append("\n  FAIL ").Append(failure);
        }

        return text.ToString();
    }
}

/// <summary>
/// Seeded damage campaigns: the same seed gives the same damaged files on every machine (System.Random with a seed is
/// stable across .NET versions).
/// </summary>
internal static class DamageCampaign
{
    public static IEnumerable<DamageCase> Cases(byte[] original, int perKind, int seed, (int Start, int Length)[]? focus = null)
    {
        var random = new Random(seed);
        int focusBytes = focus?.Sum(f => f.Length) ?? 0;
        int Offset()
        {
            if (focusBytes == 0 || random.Next(2) == 0)
            {
                return random.Next(original.Length);
            }

            int k = random.Next(focusBytes);
            foreach (var (start, length) in focus!)
            {
                if (k < length)
                {
                    return start + k;
                }

                k -= length;
            }

            throw new InvalidOperationException("unreachable");
        }

        int index = 0;
        foreach (DamageKind kind in Enum.GetValues<DamageKind>())
        {
            for (int i = 0; i < perKind; i++)
            {
                byte[] bytes;
                string description;
                int first;
                switch (kind)
                {
                    case DamageKind.Flip:
                        bytes = (byte[])original.Clone();
                        int flips = 1 + random.Next(4);
                        var parts = new List<string>();
                        first = int.MaxValue;
                        for (int f = 0; f < flips; f++)
                        {
                            int at = Offset();
                            int bit = random.Next(8);
                            bytes[at] ^= (byte)(1 << bit);
                            first = Math.Min(first, at);
                            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{at}.{bit}"));
                        }

                        description = "flip bits " + string.Join(", ", parts);
                        break;
                    case DamageKind.Truncate:
                        int length = random.Next(original.Length);
                        bytes = original[..length];
                        first = length;
                        description = string.Create(CultureInfo.InvariantCulture, $"truncate to {length} bytes");
                        break;
                    default:
                        int start = Offset();
                        int count = 1 + random.Next(Math.Min(4096, original.Length - start));
                        bytes = (byte[])original.Clone();
                        Array.Clear(bytes, start, count);
                        first = start;
                        description = string.Create(CultureInfo.InvariantCulture, $"zero {count} bytes at {start}");
                        break;
                }

                // Where the file really changed (two flips of one bit cancel out).
                int differs = bytes.AsSpan().CommonPrefixLength(original);
                yield return new DamageCase(index++, kind, description, bytes, Math.Max(first, differs));
            }
        }
    }

    /// <summary>Runs <paramref name="perKind"/> cases of each kind against the target and tallies the outcomes.</summary>
    public static DamageReport Run(IDamageTarget target, int perKind, int seed)
    {
        File.WriteAllBytes(target.CasePath, target.Finish(target.Original));
        string expected = target.Load();
        var report = new DamageReport(target.Name, target.Original.Length);
        foreach (var damage in Cases(target.Original, perKind, seed, target.Focus))
        {
            File.WriteAllBytes(target.CasePath, target.Finish(damage.Bytes));
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            var clock = Stopwatch.StartNew();
            DamageOutcome outcome;
            string detail = string.Empty;
            try
            {
                string digest = target.Load();
                outcome = digest == expected ? DamageOutcome.Identical
                    : target.IsUndetectable(damage, digest) ? DamageOutcome.UndetectableChange
                    : DamageOutcome.SilentlyDifferent;
            }
            catch (InvalidDataException ex)
            {
                outcome = ex.Message.Contains(target.CasePath, StringComparison.Ordinal) ? DamageOutcome.Refused : DamageOutcome.Unnamed;
                detail = ex.Message;
                string shape = System.Text.RegularExpressions.Regex.Replace(ex.Message.Replace(target.CasePath, "FILE", StringComparison.Ordinal), "[0-9]+", "N");
                shape = shape.Length > 110 ? shape[..110] : shape;
                report.Refusals[shape] = report.Refusals.GetValueOrDefault(shape) + 1;
            }
            catch (InvalidOperationException ex) when (ex.Message.Contains(target.CasePath, StringComparison.Ordinal) && ex.Message.Contains("other settings", StringComparison.Ordinal))
            {
                outcome = DamageOutcome.RefusedAsOtherSettings;
            }
#pragma warning disable CA1031 // the campaign records every other exception as a failure
            catch (Exception ex)
#pragma warning restore CA1031
            {
                outcome = DamageOutcome.OtherException;
                detail = $"{ex.GetType().FullName}: {ex.Message}";
            }

            clock.Stop();
            report.MaxMilliseconds = Math.Max(report.MaxMilliseconds, clock.Elapsed.TotalMilliseconds);
            report.MaxAllocatedBytes = Math.Max(report.MaxAllocatedBytes, GC.GetAllocatedBytesForCurrentThread() - allocated);
            report.Counts[(damage.Kind, outcome)] = report.Counts.GetValueOrDefault((damage.Kind, outcome)) + 1;
            if (outcome is DamageOutcome.SilentlyDifferent or DamageOutcome.Unnamed or DamageOutcome.OtherException)
            {
                report.Failures.Add($"case {damage.Index} ({damage.Description}): {outcome} {detail}");
            }
        }

        return report;
    }
}
