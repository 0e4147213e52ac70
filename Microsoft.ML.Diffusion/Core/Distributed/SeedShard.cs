using System;
using System.Globalization;

namespace Microsoft.ML.Diffusion.Core.Distributed;

/// <summary>
/// One of <see cref="Count"/> disjoint, contiguous parts of a list of items (images to generate, one seed each): shard i
/// of N owns items [⌊n·i/N⌋, ⌊n·(i+1)/N⌋). Because an image depends only on its seed, the shards' images together are the
/// bytes one process makes — whether the shards are MPI ranks or independent jobs of a batch system (<c>--shard i/N</c>:
/// a Slurm array task, a Kubernetes indexed Job).
/// </summary>
public readonly record struct SeedShard
{
    /// <summary>Initializes a new instance of the <see cref="SeedShard"/> struct.</summary>
    /// <param name="index">This shard, 0 … <paramref name="count"/> − 1.</param>
    /// <param name="count">The number of shards, at least 1.</param>
    public SeedShard(int index, int count)
    {
        if (count < 1 || index < 0 || index >= count)
        {
            throw new ArgumentOutOfRangeException(nameof(index), string.Create(CultureInfo.InvariantCulture, $"A shard is i/N with 0 ≤ i < N; got {index}/{count}."));
        }

        Index = index;
        Count = count;
    }

    /// <summary>Gets the whole list as one shard.</summary>
    public static SeedShard All => new(0, 1);

    /// <summary>Gets this shard's index.</summary>
    public int Index { get; }

    /// <summary>Gets the number of shards.</summary>
    public int Count { get; }

    /// <summary>Reads "i/N" (e.g. "3/8").</summary>
    /// <param name="text">The text.</param>
    /// <returns>The shard.</returns>
    /// <exception cref="FormatException">The text is not i/N with 0 ≤ i &lt; N.</exception>
    public static SeedShard Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Split('/');
        if (parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int index)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count)
            && count >= 1 && index < count)
        {
            return new SeedShard(index, count);
        }

        throw new FormatException($"A shard is written i/N with 0 ≤ i < N (e.g. 0/4); got '{text}'.");
    }

    /// <summary>The items [start, end) this shard owns out of <paramref name="total"/>.</summary>
    /// <param name="total">The number of items.</param>
    /// <returns>The first item and one past the last.</returns>
    public (int Start, int End) Range(int total) => ((int)((long)total * Index / Count), (int)((long)total * (Index + 1) / Count));

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Index}/{Count}");
}
