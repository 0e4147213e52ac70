// Sample quality and time of every sampler on one trained main-job model: the same seeds and labels for each sampler,
// Fréchet distance in the job's classifier's feature space against the test split, and the floor (two disjoint real
// sets of the same size). Usage:
//   dotnet run -c Release --project benchmarks/SamplerQuality -- MODEL.zip CLASSIFIER.bin IDX_FOLDER [IMAGES] [DDPM_IMAGES]
// where MODEL.zip and CLASSIFIER.bin come from a main-job run (OUT/model.zip, OUT/classifier.bin) and IDX_FOLDER holds
// t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz). Prints one JSON line per sampler.
// With "pictures MODEL.zip IDX_FOLDER OUT_FOLDER" it draws the editing pictures of README instead: test items with their
// top half regenerated (inpainting), and items re-imagined at three strengths (image-to-image).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Import;
using Microsoft.ML.Diffusion.Tools.Evaluation;
using Microsoft.ML.Diffusion.Tools.Pictures;
using static TorchSharp.torch;

try
{
    // "--device cuda" (anywhere) samples on that device; the classifier's features are computed on the CPU.
    string device = "cpu";
    int deviceAt = Array.IndexOf(args, "--device");
    if (args.Count(a => a == "--device") > 1)
    {
        throw new ArgumentException("--device is given more than once: give it once.");
    }

    if (deviceAt >= 0 && deviceAt + 1 < args.Length)
    {
        device = args[deviceAt + 1];
        args = args.Where((_, i) => i != deviceAt && i != deviceAt + 1).ToArray();
    }

    if (args.Length == 4 && args[0] == "pictures")
    {
        return EditingPictures.Draw(args[1], args[2], args[3]);
    }

    if (args.Length < 3)
    {
        Console.Error.WriteLine("usage: SamplerQuality MODEL.zip CLASSIFIER.bin IDX_FOLDER [IMAGES=1000] [DDPM_IMAGES=IMAGES]");
        return 2;
    }

    // The test split has 10,000 images, and each measure compares two disjoint sets of real images.
    int Images(int at, string name, int fallback) => args.Length <= at
        ? fallback
        : int.TryParse(args[at], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n <= 5000
            ? n
            : throw new ArgumentException($"{name} expects an integer in [0, 5000] (half the test split); got '{args[at]}'.");
    int count = Images(3, "IMAGES", 1000);
    int ddpmCount = Images(4, "DDPM_IMAGES", count);
    var mlContext = new MLContext(seed: 1);
    using var sampler = DiffusionSampler.Load(mlContext, args[0]);
    sampler.Model.MoveTo(device);
    using var classifier = FeatureClassifier.Load(args[1]);
    string Find(string name) => new[] { name + ".gz", name }.Select(n => Path.Combine(args[2], n)).FirstOrDefault(File.Exists)
        ?? throw new FileNotFoundException($"IDX_FOLDER '{args[2]}' has no {name}[.gz].");
    var test = IdxReader.Load(mlContext, Find("t10k-images-idx3-ubyte"), Find("t10k-labels-idx1-ubyte"));
    var rows = test.GetColumn<VBuffer<float>>("Pixels").Take(2 * count).Select(v => v.DenseValues().ToArray()).ToArray();
    using var pixels = tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, 1, 28, 28 });
    using var real = ImageConversion.PixelsToModel(pixels);

    var configurations = new (string Name, DiffusionScheduler Sampler, int Images)[]
    {
        ("DDPM-1000", new DdpmScheduler(), ddpmCount),
        ("DDIM-50", new DdimScheduler { Steps = 50 }, count),
        ("DDIM-20", new DdimScheduler { Steps = 20 }, count),
        ("DPM-Solver++ 10", new DpmSolverScheduler { Steps = 10 }, count),
        ("DPM-Solver++ 20", new DpmSolverScheduler { Steps = 20 }, count),
        ("DPM-Solver++ 10 Karras", new DpmSolverScheduler { Steps = 10, Spacing = TimestepSpacing.Karras }, count),
        ("DPM-Solver++ 20 Karras", new DpmSolverScheduler { Steps = 20, Spacing = TimestepSpacing.Karras }, count),
        ("Euler-a 20", new EulerAncestralScheduler { Steps = 20 }, count),
    };
    foreach (var (name, scheduler, images) in configurations)
    {
        if (images <= 0)
        {
            continue;
        }

        var algorithm = new SamplingLoop(scheduler) { GuidanceScale = sampler.Options.GuidanceScale };
        var seeds = Enumerable.Range(0, images).Select(i => 5_000_000L + i).ToArray();
        using var labels = sampler.Model.ClassCount > 0 ? tensor(Enumerable.Range(0, images).Select(i => (long)(i % sampler.Model.ClassCount)).ToArray()).to(sampler.Model.Diffusion.Device) : null;
        var clock = Stopwatch.StartNew();
        using var generated = algorithm.Sample(sampler.Model.Diffusion, seeds, labels).cpu();
        double seconds = clock.Elapsed.TotalSeconds;
        var quality = SampleQualityReport.Measure(classifier, real[..images], generated, real[images..(2 * images)]);
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            sampler = name,
            images,
            guidance = algorithm.GuidanceScale,
            frechet_distance = quality.FrechetDistance,
            floor_two_real_sets = quality.FloorDistance,
            mean_max_probability = quality.MeanMaxProbability,
            seconds,
            seconds_per_image = seconds / images,
            device,
        }));
    }

    return 0;
}
catch (Exception ex) when (DiffusionSamples.UserErrors.Describe(ex, new Dictionary<string, string>()) is string line)
{
    // What a user can cause (a missing or damaged file, a bad value): one line, no stack trace.
    Console.Error.WriteLine($"Error: {line}");
    return 1;
}

internal static class EditingPictures
{
    public static int Draw(string modelPath, string idxFolder, string outFolder)
    {
        var mlContext = new MLContext(seed: 1);
        using var sampler = DiffusionSampler.Load(mlContext, modelPath);
        string Find(string name) => new[] { name + ".gz", name }.Select(n => Path.Combine(idxFolder, n)).FirstOrDefault(File.Exists)
            ?? throw new FileNotFoundException($"IDX_FOLDER '{idxFolder}' has no {name}[.gz].");
        var test = IdxReader.Load(mlContext, Find("t10k-images-idx3-ubyte"), Find("t10k-labels-idx1-ubyte"));
        const int Items = 6;
        var pixelRows = test.GetColumn<VBuffer<float>>("Pixels").Take(Items).Select(v => v.DenseValues().ToArray()).ToArray();
        var labelValues = test.GetColumn<int>("Label").Take(Items).Select(l => (long)l).ToArray();
        using var scope = NewDisposeScope();
        var originals = ImageConversion.PixelsToModel(tensor(pixelRows.SelectMany(r => r).ToArray(), new long[] { Items, 1, 28, 28 }));
        var labels = sampler.Model.ClassCount > 0 ? tensor(labelValues) : null;
        var seeds = Enumerable.Range(0, Items).Select(i => 9_000L + i).ToArray();
        var algorithm = new SamplingLoop(new DdimScheduler { Steps = 50 }) { GuidanceScale = sampler.Options.GuidanceScale };
        var names = sampler.Model.ClassNames;
        string Name(int i) => names is not null && labelValues[i] >= 0 && labelValues[i] < names.Count ? names[(int)labelValues[i]] : $"class {labelValues[i]}";

        // Inpainting: keep the bottom half, regenerate the top half (RePaint resampling 3).
        var keep = zeros(new long[] { Items, 1, 28, 28 });
        keep[.., .., 14.., ..] = 1;
        var inpainted = algorithm.Sample(sampler.Model.Diffusion, seeds, labels, null, new ImageEdit(originals, keep) { Resampling = 3 });
        var masked = (originals * keep) - (ones_like(keep) - keep); // the regenerated part shown black
        var rows = new System.Collections.Generic.List<Tensor>();
        var captions = new System.Collections.Generic.List<string>();
        for (int i = 0; i < Items; i++)
        {
            rows.Add(originals[i]);
            rows.Add(masked[i]);
            rows.Add(inpainted[i].cpu());
            captions.AddRange(new[] { Name(i), "TOP HIDDEN", "INPAINTED" });
        }

        ImageConversion.SavePng(DiffusionPictures.LabelledGrid(stack(rows.ToArray()), 6, captions, scale: 3), Path.Combine(outFolder, "editing-inpainting.png"));

        // Image-to-image at three strengths.
        rows.Clear();
        captions.Clear();
        var strengths = new[] { 0.3, 0.6, 0.9 };
        var edited = strengths.Select(s => algorithm.Sample(sampler.Model.Diffusion, seeds, labels, null, new ImageEdit(originals) { Strength = s }).cpu()).ToArray();
        for (int i = 0; i < Items; i++)
        {
            rows.Add(originals[i]);
            captions.Add(Name(i));
            for (int k = 0; k < strengths.Length; k++)
            {
                rows.Add(edited[k][i]);
                captions.Add(FormattableString.Invariant($"S = {strengths[k]}"));
            }
        }

        ImageConversion.SavePng(DiffusionPictures.LabelledGrid(stack(rows.ToArray()), 8, captions, scale: 3), Path.Combine(outFolder, "editing-strengths.png"));
        Console.WriteLine($"Wrote editing-inpainting.png and editing-strengths.png to {outFolder}.");
        return 0;
    }
}
