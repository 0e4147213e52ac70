// Sample quality and time of every sampler on one trained main-job model: the same seeds and labels for each sampler,
// Fréchet distance in the job's classifier's feature space against the test split, and the floor (two disjoint real
// sets of the same size). Usage:
//   dotnet run -c Release --project benchmarks/SamplerQuality -- MODEL.zip CLASSIFIER.bin IDX_FOLDER [IMAGES] [DDPM_IMAGES]
// where MODEL.zip and CLASSIFIER.bin come from a main-job run (OUT/model.zip, OUT/classifier.bin) and IDX_FOLDER holds
// t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz). Prints one JSON line per sampler.
using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Data;
using static TorchSharp.torch;

if (args.Length < 3)
{
    Console.Error.WriteLine("usage: SamplerQuality MODEL.zip CLASSIFIER.bin IDX_FOLDER [IMAGES=1000] [DDPM_IMAGES=IMAGES]");
    return 2;
}

int count = args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 1000;
int ddpmCount = args.Length > 4 ? int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture) : count;
var mlContext = new MLContext(seed: 1);
using var sampler = DiffusionSampler.Load(mlContext, args[0]);
using var classifier = FeatureClassifier.Load(args[1]);
string Find(string name) => new[] { name + ".gz", name }.Select(n => Path.Combine(args[2], n)).First(File.Exists);
var test = IdxReader.Load(mlContext, Find("t10k-images-idx3-ubyte"), Find("t10k-labels-idx1-ubyte"));
var rows = test.GetColumn<VBuffer<float>>("Pixels").Take(2 * count).Select(v => v.DenseValues().ToArray()).ToArray();
using var pixels = tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, 1, 28, 28 });
using var real = ImageConversion.PixelsToModel(pixels);

var configurations = new (string Name, TimestepSampler Sampler, int Images)[]
{
    ("DDPM-1000", new DdpmSampler(), ddpmCount),
    ("DDIM-50", new DdimSampler { Steps = 50 }, count),
    ("DDIM-20", new DdimSampler { Steps = 20 }, count),
    ("DPM-Solver++ 10", new DpmSolverSampler { Steps = 10 }, count),
    ("DPM-Solver++ 20", new DpmSolverSampler { Steps = 20 }, count),
    ("DPM-Solver++ 10 Karras", new DpmSolverSampler { Steps = 10, Spacing = TimestepSpacing.Karras }, count),
    ("DPM-Solver++ 20 Karras", new DpmSolverSampler { Steps = 20, Spacing = TimestepSpacing.Karras }, count),
    ("Euler-a 20", new EulerAncestralSampler { Steps = 20 }, count),
};
foreach (var (name, algorithm, images) in configurations)
{
    if (images <= 0)
    {
        continue;
    }

    algorithm.GuidanceScale = sampler.Options.GuidanceScale;
    var seeds = Enumerable.Range(0, images).Select(i => 5_000_000L + i).ToArray();
    using var labels = sampler.Model.ClassCount > 0 ? tensor(Enumerable.Range(0, images).Select(i => (long)(i % sampler.Model.ClassCount)).ToArray()) : null;
    var clock = Stopwatch.StartNew();
    using var generated = algorithm.Sample(sampler.Model.Diffusion, seeds, labels);
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
    }));
}

return 0;
