using System;
using System.Globalization;

namespace FashionMnist;

/// <summary>The command line of the Fashion-MNIST job.</summary>
public sealed class JobOptions
{
    /// <summary>How to call the job.</summary>
    public const string Usage =
        "dotnet run -c Release --project samples/FashionMnist -- [--data DIR] [--steps N] [--minutes M] [--out DIR]\n"
        + "    [--sampler ddim|ddpm] [--sampling-steps S] [--guidance W] [--unconditional] [--resume] [--device cpu|cuda] [--seed N]\n"
        + "    [--experiment MINUTES] [--no-metrics] [--metric-images N]";

    /// <summary>Gets or sets a folder with IDX files (train-* or t10k-*); default: the full training split when installed, else the embedded test split.</summary>
    public string? Data { get; set; }

    /// <summary>Gets or sets a fixed number of optimizer steps (overrides the time budget).</summary>
    public int? Steps { get; set; }

    /// <summary>Gets or sets the training time budget in minutes.</summary>
    public double Minutes { get; set; } = 6.5;

    /// <summary>Gets or sets the output folder.</summary>
    public string Out { get; set; } = "out";

    /// <summary>Gets or sets the sampler: "ddim" or "ddpm".</summary>
    public string Sampler { get; set; } = "ddim";

    /// <summary>Gets or sets the DDIM step count.</summary>
    public int SamplingSteps { get; set; } = 50;

    /// <summary>Gets or sets the classifier-free guidance scale.</summary>
    public double Guidance { get; set; } = 2.0;

    /// <summary>Gets or sets a value indicating whether to train without labels.</summary>
    public bool Unconditional { get; set; }

    /// <summary>Gets or sets a value indicating whether to continue from the newest checkpoint in OUT/checkpoints.</summary>
    public bool Resume { get; set; }

    /// <summary>Gets or sets the device.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Gets or sets the minutes of an options search before the final training (null: no search).</summary>
    public double? Experiment { get; set; }

    /// <summary>Gets or sets a value indicating whether bits/dim and Fréchet distance are measured at the end.</summary>
    public bool Metrics { get; set; } = true;

    /// <summary>Gets or sets how many generated and real images the Fréchet distance compares.</summary>
    public int MetricImages { get; set; } = 200;

    /// <summary>Gets or sets the seed.</summary>
    public int Seed { get; set; } = 1;

    /// <summary>Parses the command line.</summary>
    public static JobOptions Parse(string[] args)
    {
        var o = new JobOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
            switch (args[i])
            {
                case "--data": o.Data = Next(); break;
                case "--steps": o.Steps = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--minutes": o.Minutes = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--out": o.Out = Next(); break;
                case "--sampler": o.Sampler = Next().ToLowerInvariant(); break;
                case "--sampling-steps": o.SamplingSteps = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--guidance": o.Guidance = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--unconditional": o.Unconditional = true; break;
                case "--resume": o.Resume = true; break;
                case "--device": o.Device = Next(); break;
                case "--seed": o.Seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--experiment": o.Experiment = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--no-metrics": o.Metrics = false; break;
                case "--metric-images": o.MetricImages = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--help" or "-h": throw new ArgumentException(Usage);
                default: throw new ArgumentException($"Unknown argument '{args[i]}'.\n{Usage}");
            }
        }

        if (o.Sampler is not ("ddim" or "ddpm"))
        {
            throw new ArgumentException($"--sampler must be ddim or ddpm, not '{o.Sampler}'.");
        }

        if (o.Steps is < 1 || o.Minutes <= 0 || o.SamplingSteps < 1 || o.Experiment is <= 0 || o.MetricImages < 2)
        {
            throw new ArgumentException("--steps, --minutes, --sampling-steps and --experiment must be positive, --metric-images at least 2.");
        }

        return o;
    }
}
