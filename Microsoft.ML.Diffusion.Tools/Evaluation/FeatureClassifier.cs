using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>Options of <see cref="FeatureClassifier.Train"/>.</summary>
public sealed class FeatureClassifierOptions
{
    /// <summary>Gets or sets the image column (MLImage or pixel vector in [0, 255]). Default "Pixels".</summary>
    public string ImageColumnName { get; set; } = "Pixels";

    /// <summary>Gets or sets the label column (key or integer). Default "Label".</summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>Gets or sets the image side. Default 28.</summary>
    public int ImageSize { get; set; } = 28;

    /// <summary>Gets or sets the channels. Default 1.</summary>
    public int Channels { get; set; } = 1;

    /// <summary>Gets or sets the passes over the data. Default 3.</summary>
    public int Epochs { get; set; } = 3;

    /// <summary>Gets or sets images per step. Default 128.</summary>
    public int BatchSize { get; set; } = 128;

    /// <summary>Gets or sets Adam's learning rate. Default 1e-3.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Gets or sets the seed. Default 0.</summary>
    public int Seed { get; set; }

    /// <summary>Gets or sets the width of the feature (penultimate) layer. Default 128.</summary>
    public int FeatureSize { get; set; } = 128;

    /// <summary>Gets or sets the device it trains on: "cpu" (default), "cuda" or "cuda:N".</summary>
    public string Device { get; set; } = "cpu";
}

/// <summary>
/// A small CNN classifier (conv 3×3 ×32 → pool → conv 3×3 ×64 → pool → linear 128 → linear classes) that the library
/// trains on a labelled data set and whose penultimate layer is the feature space for <see cref="FrechetDistance"/>. It is
/// trained here, saved and reused — never downloaded — so Fréchet distances computed with it are comparable only with
/// other distances computed with the same saved classifier and the same sample count.
/// </summary>
public sealed class FeatureClassifier : IDisposable
{
    private const string Magic = "MLDFEAT1";
    private readonly Network network;

    private FeatureClassifier(Config config)
    {
        Settings = config;
        network = new Network(config.Channels, config.ImageSize, config.FeatureSize, config.ClassCount);
    }

    /// <summary>Gets the number of classes.</summary>
    public int ClassCount => Settings.ClassCount;

    /// <summary>Gets the feature size.</summary>
    public int FeatureSize => Settings.FeatureSize;

    private Config Settings { get; }

    /// <summary>Trains a classifier on labelled images.</summary>
    /// <param name="data">The data.</param>
    /// <param name="options">The options.</param>
    /// <returns>The trained classifier.</returns>
    public static FeatureClassifier Train(IDataView data, FeatureClassifierOptions options)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        var device = Torch.ParseDevice(options.Device);
        using var images = ImageBatchReader.ReadAll(data, options.ImageColumnName, options.LabelColumnName, options.Channels, options.ImageSize, options.ImageSize);
        manual_seed(options.Seed);
        var classifier = new FeatureClassifier(new Config(options.Channels, options.ImageSize, options.FeatureSize, images.ClassCount));
        classifier.MoveTo(device);
        classifier.Fit(images.Images, images.Labels!, options);
        return classifier;
    }

    /// <summary>Loads a classifier written by <see cref="Save"/>.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The classifier.</returns>
    public static FeatureClassifier Load(string path)
    {
        try
        {
            using var reader = new BinaryReader(File.OpenRead(path));
            if (new string(reader.ReadChars(Magic.Length)) != Magic)
            {
                throw new InvalidDataException($"'{path}' is not a Microsoft.ML.Diffusion feature classifier.");
            }

            var config = JsonSerializer.Deserialize<Config>(reader.ReadString()) ?? throw new InvalidDataException($"'{path}' has no configuration.");
            var classifier = new FeatureClassifier(config);
            classifier.network.load(reader, strict: true);
            classifier.network.eval();
            return classifier;
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"'{path}' is truncated.", ex);
        }
    }

    /// <summary>Writes the classifier (a temporary file renamed into place).</summary>
    /// <param name="path">The file.</param>
    public void Save(string path)
    {
        string temp = path + ".tmp";
        using (var writer = new BinaryWriter(File.Create(temp)))
        {
            writer.Write(Magic.ToCharArray());
            writer.Write(JsonSerializer.Serialize(Settings));
            network.save(writer);
        }

        File.Move(temp, path, overwrite: true);
    }

    /// <summary>The fraction of images whose most probable class is their label.</summary>
    /// <param name="data">Labelled data with the training columns.</param>
    /// <param name="options">The columns and size (the training options).</param>
    /// <returns>Accuracy in [0, 1].</returns>
    public double Accuracy(IDataView data, FeatureClassifierOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var images = ImageBatchReader.ReadAll(data, options.ImageColumnName, options.LabelColumnName, Settings.Channels, Settings.ImageSize, Settings.ImageSize);
        using var probabilities = Probabilities(images.Images);
        using var predicted = probabilities.argmax(1);
        return predicted.eq(images.Labels!).to(float64).mean().item<double>();
    }

    /// <summary>Penultimate-layer features of model-space images.</summary>
    /// <param name="images">N×C×H×W in [−1, 1].</param>
    /// <returns>N×FeatureSize.</returns>
    public Tensor Features(Tensor images) => Batched(images, x => network.Features(x));

    /// <summary>Class probabilities of model-space images.</summary>
    /// <param name="images">N×C×H×W in [−1, 1].</param>
    /// <returns>N×classes.</returns>
    public Tensor Probabilities(Tensor images) => Batched(images, x => network.Head(network.Features(x)).softmax(1));

    /// <summary>Releases the network.</summary>
    public void Dispose() => network.Dispose();

    /// <summary>Moves the network to a device ("cpu", "cuda" or "cuda:N"); inputs may live anywhere, results are on the CPU.</summary>
    /// <param name="device">The device.</param>
    public void MoveTo(string device) => MoveTo(Torch.ParseDevice(device));

    private void MoveTo(Device device) => network.to(device);

    private Device NetworkDevice => network.parameters().First().device;

    private Tensor Batched(Tensor images, Func<Tensor, Tensor> f)
    {
        ArgumentNullException.ThrowIfNull(images);
        using var noGrad = no_grad();
        network.eval();
        using var scope = NewDisposeScope();
        var device = NetworkDevice;
        var parts = Enumerable.Range(0, (int)((images.shape[0] + 255) / 256))
            .Select(i => f(images[(i * 256)..Math.Min((i + 1) * 256, (int)images.shape[0])].to(float32, device)).cpu())
            .ToArray();
        return cat(parts, 0).MoveToOuterDisposeScope();
    }

    private void Fit(Tensor images, Tensor labels, FeatureClassifierOptions options)
    {
        network.train();
        using var optimizer = optim.Adam(network.parameters(), lr: options.LearningRate);
        using var generator = new Generator((ulong)options.Seed, CPU);
        var device = NetworkDevice;
        long n = images.shape[0];
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            using var order = DeviceRandom.Permutation(n, CPU, generator);
            for (long start = 0; start < n; start += options.BatchSize)
            {
                using var scope = NewDisposeScope();
                var indices = order[TensorIndex.Slice(start, Math.Min(start + options.BatchSize, n))];
                var x = images.index_select(0, indices).to(device);
                var y = labels.index_select(0, indices).to(device);
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(network.Head(network.Features(x)), y);
                loss.backward();
                optimizer.step();
            }
        }

        network.eval();
    }

    /// <summary>What the saved file records.</summary>
    private sealed record Config(int Channels, int ImageSize, int FeatureSize, int ClassCount);

    private sealed class Network : nn.Module
    {
        private readonly Conv2d conv1;
        private readonly Conv2d conv2;
        private readonly Linear features;
        private readonly Linear head;

        public Network(int channels, int size, int featureSize, int classes)
            : base(nameof(FeatureClassifier))
        {
            conv1 = nn.Conv2d(channels, 32, 3, padding: 1);
            conv2 = nn.Conv2d(32, 64, 3, padding: 1);
            features = nn.Linear(64L * (size / 4) * (size / 4), featureSize);
            head = nn.Linear(featureSize, classes);
            RegisterComponents();
        }

        public Tensor Features(Tensor x)
        {
            using var scope = NewDisposeScope();
            var h = nn.functional.max_pool2d(nn.functional.relu(conv1.call(x)), 2);
            h = nn.functional.max_pool2d(nn.functional.relu(conv2.call(h)), 2);
            return nn.functional.relu(features.call(h.flatten(1))).MoveToOuterDisposeScope();
        }

        public Tensor Head(Tensor f) => head.call(f);
    }
}
