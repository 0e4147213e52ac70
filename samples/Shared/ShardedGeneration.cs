using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Distributed;
using Microsoft.ML.Diffusion.Tools.Pictures;
using static TorchSharp.torch;

namespace DiffusionSamples;

/// <summary>How a sample lays out its grid of generated images: the caption of a label, the columns, the enlargement.</summary>
/// <param name="Caption">The caption under an image of a class label (called only for class-conditional models).</param>
/// <param name="Columns">The grid's columns for a number of images.</param>
/// <param name="Scale">The enlargement of every pixel for the model's image side.</param>
/// <param name="GridName">The grid's file name (the name the sample's training run gives its grid).</param>
internal sealed record GridStyle(Func<DiffusionModel, int, string> Caption, Func<int, int> Columns, Func<int, int> Scale, string GridName);

/// <summary>
/// Generation from a saved model, sharded over independent jobs (docs/distributed.md): <c>--generate MODEL --shard i/N
/// --out DIR</c> makes the images of shard i of N — image k has the seed <c>seed·1000 + k</c> and, for a class-conditional
/// model, the label <c>k mod classes</c>, as the training run's grid — and writes each as
/// <c>DIR/images/image-K-seed-S.png</c>, then <c>DIR/shard-i-of-N.tsv</c> (its images' index, seed, label, caption and
/// SHA-256) last, so a shard whose list exists is complete. <c>--merge DIR</c> checks that every shard of the run is
/// there, whole and from the same model and settings, and assembles the grid. Because an image depends only on its seed,
/// the merged grid and folder are the bytes one unsharded run writes (<c>--generate</c> without <c>--shard</c> is shard
/// 0/1, merged at once).
/// </summary>
internal static class ShardedGeneration
{
    /// <summary>The most images one run generates.</summary>
    public const int MaxCount = 10_000_000;

    /// <summary>The most images a grid shows; a larger run writes the folder of images only.</summary>
    public const int MaxGridImages = 1024;

    private const int Block = 64; // images generated per call (its tensors are released after each)
    private const string ImagesFolder = "images";

    /// <summary>Whether the command line asks for generation or a merge rather than training.</summary>
    /// <param name="args">The command line.</param>
    /// <returns>True when --generate or --merge is given.</returns>
    public static bool IsRequested(IEnumerable<string> args) =>
        args.Any(a => a is "--generate" or "--merge" || a.StartsWith("--generate=", StringComparison.Ordinal) || a.StartsWith("--merge=", StringComparison.Ordinal));

    /// <summary>Runs --generate or --merge; returns the exit code (0 done, 1 failed on what it was given, 2 bad command line).</summary>
    /// <param name="args">The command line.</param>
    /// <param name="console">Where messages go.</param>
    /// <param name="synopsis">How the program is run from the repository root.</param>
    /// <param name="defaultCount">The images of a run without --count (those of the training run's grid).</param>
    /// <param name="style">The grid's layout.</param>
    /// <returns>The exit code.</returns>
    public static int Run(string[] args, TextWriter console, string synopsis, int defaultCount, GridStyle style)
    {
        ArgumentNullException.ThrowIfNull(console);
        var options = new GenerationOptions { Count = defaultCount };
        int? code = Define(options, synopsis, defaultCount).Parse(args, console);
        if (code is int exit)
        {
            return exit;
        }

        if (Conflict(options) is string conflict)
        {
            console.WriteLine(conflict);
            console.WriteLine("Run with --generate MODEL --help to see the options.");
            return CommandLine.BadCommandLine;
        }

        SeedShard shard = SeedShard.All;
        if (options.Shard is string text)
        {
            try
            {
                shard = SeedShard.Parse(text);
            }
            catch (FormatException)
            {
                console.WriteLine($"--shard expects i/N with N ≥ 1 and 0 ≤ i < N (e.g. 0/8 is the first of 8 shards); got '{text}'.");
                console.WriteLine("Run with --generate MODEL --help to see the options.");
                return CommandLine.BadCommandLine;
            }
        }

        var names = new Dictionary<string, string> { ["device"] = "--device", ["count"] = "--count" };
        return UserErrors.Run(console, names, () => options.Merge is string folder
            ? Merge(folder, console)
            : Generate(options, shard, style, console));
    }

    private static string? Conflict(GenerationOptions o) =>
        (o.Model, o.Merge) switch
        {
            (not null, not null) => "--generate and --merge are two steps: generate the shards first (one job each), then merge their folder.",
            (null, not null) when o.Shard is not null || o.CountGiven || o.Out is not null || o.Device is not null =>
                "--merge DIR takes no other option: the shards' lists in DIR say the count, the shards and the grid.",
            _ => null,
        };

    private static int Generate(GenerationOptions options, SeedShard shard, GridStyle style, TextWriter console)
    {
        string output = options.Out ?? "generated";
        UserErrors.CheckOutputFolder(output);
        string model = options.Model!;
        string modelHash = Sha256(File.Exists(model) ? File.ReadAllBytes(model) : throw new FileNotFoundException($"--generate: the model file '{model}' does not exist.", model));
        using var sampler = DiffusionSampler.Load(new MLContext(), model);
        if (options.Device is string device)
        {
            sampler.Model.MoveTo(device);
        }

        int count = options.Count;
        var (start, end) = shard.Range(count);
        int classes = sampler.Model.ClassCount;
        long baseSeed = sampler.Options.Seed * 1000;
        int digits = Math.Max(6, (count - 1).ToString(CultureInfo.InvariantCulture).Length);
        var header = new ManifestHeader(modelHash, count, shard.Count, style.Columns(count), style.Scale(sampler.Model.ImageHeight), style.GridName);
        console.WriteLine($"Shard {shard} of {count} images from {model}: images {start} to {end - 1} (seeds {baseSeed + start} to {baseSeed + end - 1}) into {Path.GetFullPath(Path.Combine(output, ImagesFolder))}.");

        string images = Path.Combine(output, ImagesFolder);
        Directory.CreateDirectory(images);
        var rows = new List<ManifestRow>(end - start);
        var loop = sampler.Options.CreateSamplingLoop();
        for (int first = start; first < end; first += Block)
        {
            int n = Math.Min(Block, end - first);
            using var scope = NewDisposeScope();
            long[] seeds = Enumerable.Range(first, n).Select(k => baseSeed + k).ToArray();
            var labels = classes > 0 ? tensor(Enumerable.Range(first, n).Select(k => (long)(k % classes)).ToArray(), device: sampler.Model.Diffusion.Device) : null;
            var generated = ImageConversion.ToMLImages(loop.Sample(sampler.Model.Diffusion, seeds, labels));
            for (int j = 0; j < n; j++)
            {
                int k = first + j;
                string name = string.Create(CultureInfo.InvariantCulture, $"image-{k.ToString(new string('0', digits), CultureInfo.InvariantCulture)}-seed-{seeds[j]}.png");
                string path = Path.Combine(images, name);
                using (var image = generated[j])
                {
                    ImageConversion.SavePng(image, path);
                }

                rows.Add(new ManifestRow(k, seeds[j], classes > 0 ? k % classes : -1, classes > 0 ? style.Caption(sampler.Model, k % classes) : string.Empty, name, Sha256(File.ReadAllBytes(path))));
            }
        }

        // The list last: a shard whose list exists is complete (a job killed before it leaves no list, and is run again).
        string manifest = Path.Combine(output, ManifestName(shard));
        WriteManifest(manifest, header, rows);
        if (shard.Count == 1)
        {
            return Merge(output, console);
        }

        console.WriteLine($"Wrote shard {shard}: {rows.Count} images and {Path.GetFileName(manifest)}. When all {shard.Count} shards are done: --merge {output}");
        return 0;
    }

    private static int Merge(string folder, TextWriter console)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"--merge: the folder '{folder}' does not exist.");
        }

        var manifests = Directory.GetFiles(folder, "shard-*-of-*.tsv").OrderBy(f => f, StringComparer.Ordinal).ToArray();
        if (manifests.Length == 0)
        {
            throw new FileNotFoundException($"--merge: '{folder}' holds no shard list (shard-i-of-N.tsv): run --generate MODEL --shard i/N --out {folder} for every shard first.");
        }

        var shards = manifests.Select(ReadManifest).ToArray();
        var first = shards[0];
        foreach (var other in shards.Skip(1))
        {
            if (other.Header != first.Header)
            {
                throw new InvalidDataException($"--merge: {Path.GetFileName(other.Path)} belongs to another run than {Path.GetFileName(first.Path)} ({first.Header.Difference(other.Header)}): keep one run's shards in a folder.");
            }
        }

        int n = first.Header.Shards;
        var missing = Enumerable.Range(0, n).Where(i => !shards.Any(s => s.Index == i)).ToArray();
        if (missing.Length > 0)
        {
            throw new FileNotFoundException(string.Create(CultureInfo.InvariantCulture,
                $"--merge: {missing.Length} of {n} shards are missing in '{folder}': {string.Join(", ", missing.Take(10).Select(i => $"{i}/{n}"))}{(missing.Length > 10 ? ", …" : string.Empty)} (no {ManifestName(new SeedShard(missing[0], n))}); run them (or the failed array tasks) again, then merge."));
        }

        int count = first.Header.Count;
        var rows = shards.SelectMany(s => s.Rows).OrderBy(r => r.Index).ToArray();
        if (rows.Length != count || rows.Where((r, i) => r.Index != i).Any())
        {
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"--merge: the shard lists in '{folder}' list {rows.Length} images, not each of the run's {count} once."));
        }

        // Every image is read back and checked against its list: a file cut short or changed since is named.
        var images = new List<MLImage>(rows.Length);
        try
        {
            foreach (var row in rows)
            {
                string path = Path.Combine(folder, ImagesFolder, row.File);
                byte[] bytes = File.Exists(path) ? File.ReadAllBytes(path) : throw new FileNotFoundException($"--merge: image {row.Index} ({path}) is missing.", path);
                if (Sha256(bytes) != row.Sha256)
                {
                    throw new InvalidDataException($"--merge: '{path}' is not the file its shard wrote (its SHA-256 differs from the shard's list): generate that shard again.");
                }

                if (count <= MaxGridImages)
                {
                    images.Add(MLImage.CreateFromFile(path));
                }
            }

            if (count > MaxGridImages)
            {
                console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Merged {n} shards: {count} images in {Path.GetFullPath(Path.Combine(folder, ImagesFolder))} (no grid: more than {MaxGridImages} images)."));
                return 0;
            }

            string grid = Path.Combine(folder, first.Header.GridName);
            using var scope = NewDisposeScope();
            bool captioned = rows.Any(r => r.Label >= 0);
            using var picture = DiffusionPictures.LabelledGrid(ToModelSpace(images), first.Header.Columns, captioned ? rows.Select(r => r.Caption).ToArray() : null, first.Header.Scale);
            ImageConversion.SavePng(picture, grid);
            console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Merged {n} shard{(n == 1 ? string.Empty : "s")}: {count} images in {Path.GetFullPath(Path.Combine(folder, ImagesFolder))} and the grid {Path.GetFullPath(grid)}."));
            return 0;
        }
        finally
        {
            foreach (var image in images)
            {
                image.Dispose();
            }
        }
    }

    // Decoded PNGs (BGRA; gray written as R = G = B) → N×C×H×W in [−1, 1]; the grid maps them back to the same bytes.
    private static Tensor ToModelSpace(IReadOnlyList<MLImage> images)
    {
        int width = images[0].Width, height = images[0].Height, plane = width * height;
        bool gray = images.All(image => IsGray(image.Pixels));
        int channels = gray ? 1 : 3;
        var planar = new byte[images.Count * channels * plane];
        for (int n = 0; n < images.Count; n++)
        {
            if (images[n].Width != width || images[n].Height != height)
            {
                throw new InvalidDataException($"--merge: the images differ in size ({width}×{height} and {images[n].Width}×{images[n].Height}).");
            }

            ReadOnlySpan<byte> pixels = images[n].Pixels;
            bool rgba = images[n].PixelFormat == MLPixelFormat.Rgba32;
            for (int i = 0; i < plane; i++)
            {
                byte r = pixels[(4 * i) + (rgba ? 0 : 2)], g = pixels[(4 * i) + 1], b = pixels[(4 * i) + (rgba ? 2 : 0)];
                int at = n * channels * plane;
                planar[at + i] = r;
                if (!gray)
                {
                    planar[at + plane + i] = g;
                    planar[at + (2 * plane) + i] = b;
                }
            }
        }

        return ImageConversion.PixelsToModel(tensor(planar, new long[] { images.Count, channels, height, width }));
    }

    private static bool IsGray(ReadOnlySpan<byte> bgra)
    {
        for (int i = 0; i + 3 < bgra.Length; i += 4)
        {
            if (bgra[i] != bgra[i + 1] || bgra[i + 1] != bgra[i + 2])
            {
                return false;
            }
        }

        return true;
    }

    private static string ManifestName(SeedShard shard) => string.Create(CultureInfo.InvariantCulture, $"shard-{shard.Index}-of-{shard.Count}.tsv");

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    // The list: "# key value" lines (the run: model, count, shards, grid), a column header, then one row per image.
    private static void WriteManifest(string path, ManifestHeader header, IReadOnlyList<ManifestRow> rows)
    {
        var lines = new List<string>
        {
            $"# model-sha256 {header.ModelSha256}",
            string.Create(CultureInfo.InvariantCulture, $"# count {header.Count}"),
            string.Create(CultureInfo.InvariantCulture, $"# shards {header.Shards}"),
            string.Create(CultureInfo.InvariantCulture, $"# columns {header.Columns}"),
            string.Create(CultureInfo.InvariantCulture, $"# scale {header.Scale}"),
            $"# grid {header.GridName}",
            "index\tseed\tlabel\tcaption\tfile\tsha256",
        };
        lines.AddRange(rows.Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Index}\t{r.Seed}\t{r.Label}\t{r.Caption.Replace('\t', ' ')}\t{r.File}\t{r.Sha256}")));
        string temporary = path + ".tmp";
        File.WriteAllLines(temporary, lines);
        File.Move(temporary, path, overwrite: true);
    }

    private static Manifest ReadManifest(string path)
    {
        string name = Path.GetFileName(path);
        string[] parts = Path.GetFileNameWithoutExtension(path).Split('-'); // shard, i, of, N
        if (parts.Length != 4 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int index) || !int.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out int shards))
        {
            throw new InvalidDataException($"--merge: '{name}' is not named shard-i-of-N.tsv.");
        }

        var keys = new Dictionary<string, string>();
        var rows = new List<ManifestRow>();
        string[] lines = File.ReadAllLines(path);
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n];
            if (line.StartsWith("# ", StringComparison.Ordinal))
            {
                int space = line.IndexOf(' ', 2);
                if (space > 0)
                {
                    keys[line[2..space]] = line[(space + 1)..];
                }

                continue;
            }

            if (line.StartsWith("index\t", StringComparison.Ordinal) || line.Length == 0)
            {
                continue;
            }

            string[] f = line.Split('\t');
            if (f.Length != 6 || !int.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out int k) || !long.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out long seed)
                || !int.TryParse(f[2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int label) || f[4].Contains('/', StringComparison.Ordinal) || f[4].Contains('\\', StringComparison.Ordinal))
            {
                throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"--merge: '{name}' line {n + 1} is not index, seed, label, caption, file, sha256: '{line}'."));
            }

            rows.Add(new ManifestRow(k, seed, label, f[3], f[4], f[5]));
        }

        int Number(string key) => keys.TryGetValue(key, out string? v) && int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int x) && x > 0
            ? x
            : throw new InvalidDataException($"--merge: '{name}' has no valid '# {key}' line.");
        string Text(string key) => keys.TryGetValue(key, out string? v) && v.Length > 0 ? v : throw new InvalidDataException($"--merge: '{name}' has no '# {key}' line.");

        var header = new ManifestHeader(Text("model-sha256"), Number("count"), Number("shards"), Number("columns"), Number("scale"), Path.GetFileName(Text("grid")));
        if (header.Shards != shards || index >= shards)
        {
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"--merge: '{name}' says {header.Shards} shards in its '# shards' line."));
        }

        return new Manifest(path, index, header, rows);
    }

    private static CommandLine Define(GenerationOptions o, string synopsis, int defaultCount) =>
        new CommandLine(
            synopsis + " --generate MODEL",
            "Generates images from a saved model, whole or as one shard of a batch job (docs/distributed.md): image k has the seed\n"
            + "seed·1000 + k (the model's sampler seed) and, for a class-conditional model, the class k mod classes, as the training\n"
            + "run's grid. Each image is written as OUT/images/image-K-seed-S.png, then the shard's list OUT/shard-i-of-N.tsv;\n"
            + "--merge OUT checks that every shard is there and writes the grid. An unsharded run writes the grid at once.")
            .Text("--generate", "MODEL", "the model file (model.zip) to generate from", v => o.Model = v)
            .Integer("--count", "N", string.Create(CultureInfo.InvariantCulture, $"images in all shards together (default {defaultCount})"), v =>
            {
                o.Count = v;
                o.CountGiven = true;
            }, max: MaxCount)
            .Text("--shard", "i/N", "make only shard i of N (0 ≤ i < N): images ⌊count·i/N⌋ to ⌊count·(i+1)/N⌋ − 1", v => o.Shard = v)
            .Text("--out", "DIR", "the output folder (default generated); the shards of one run share it", v => o.Out = v)
            .Text("--device", "cpu|cuda", "the device: cpu, cuda or cuda:N (default: where the model was saved)", v => o.Device = v)
            .Text("--merge", "DIR", "assemble the grid of a folder whose shards are all done", v => o.Merge = v);

    private sealed class GenerationOptions
    {
        public string? Model { get; set; }

        public string? Merge { get; set; }

        public int Count { get; set; }

        public bool CountGiven { get; set; }

        public string? Shard { get; set; }

        public string? Out { get; set; }

        public string? Device { get; set; }
    }

    private sealed record ManifestHeader(string ModelSha256, int Count, int Shards, int Columns, int Scale, string GridName)
    {
        public string Difference(ManifestHeader other) =>
            ModelSha256 != other.ModelSha256 ? "another model file"
            : Count != other.Count ? string.Create(CultureInfo.InvariantCulture, $"--count {Count} and {other.Count}")
            : Shards != other.Shards ? string.Create(CultureInfo.InvariantCulture, $"{Shards} and {other.Shards} shards")
            : "another grid";
    }

    private sealed record ManifestRow(int Index, long Seed, int Label, string Caption, string File, string Sha256);

    private sealed record Manifest(string Path, int Index, ManifestHeader Header, IReadOnlyList<ManifestRow> Rows);
}
