using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.ML.Diffusion.Import;
using Microsoft.ML.Diffusion.Tests.MLNet;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Import;

/// <summary>
/// diffusers pipeline folders written by Data/Diffusers/make_fixture.py (diffusers 0.21.0 on PyTorch 1.13, run once):
/// ddpm-tiny (laid out as google/ddpm-cifar10-32: a .bin with the old attention names) and ddpm-class-tiny (class labels,
/// learned variance, fp16 safetensors); the UNet2DModel outputs for fixed inputs are in reference.safetensors.
/// </summary>
[TestClass]
public sealed class DiffusersPipelineTests
{
    // Outputs are O(1); float32 through two different libtorch builds.
    private const double Tolerance = 1e-4;

    [TestMethod]
    public void ACifarStylePipelineWithOldAttentionNamesGivesTheDiffusersOutputs()
    {
        using var sampler = DiffusersPipeline.Import(new MLContext(), Fixture("ddpm-tiny"));
        var network = (DiffusersUNet)sampler.Model.Diffusion.Model;
        Assert.AreEqual(253_123L, network.ParameterCount, "UNet2DModel's parameter count (make_fixture.py prints it)");
        Assert.AreEqual(network.ParameterCount, network.Shape.CountParameters(), "the count computed without building");
        Assert.IsFalse(network.Shape.FlipSinToCos);
        Assert.AreEqual(1, network.Shape.FreqShift);
        Assert.AreEqual(0, network.Shape.DownsamplePadding);
        Assert.IsNull(network.Shape.AttentionHeadDim, "attention_head_dim null: one head as wide as the block");
        Assert.AreEqual(1000, sampler.Model.Diffusion.Timesteps);
        Assert.IsInstanceOfType<DdpmScheduler>(sampler.Options.Scheduler);
        Assert.IsTrue(sampler.Options.ClipDenoised, "clip_sample");
        Assert.AreEqual(VarianceType.FixedSmall, sampler.Model.Diffusion.Options.Variance);
        Assert.AreEqual(8, sampler.Model.ImageHeight, "sample_size");

        double difference = MaxDifference(network, "x1", "t1", null, "out1");
        Console.WriteLine($"max |ours - diffusers| (ddpm-tiny, .bin, old names): {difference:E2}");
        Assert.IsLessThan(Tolerance, difference);
    }

    [TestMethod]
    public void AClassConditionalLearnedVarianceFp16PipelineGivesTheDiffusersOutputs()
    {
        using var sampler = DiffusersPipeline.Import(new MLContext(), Fixture("ddpm-class-tiny"));
        var network = (DiffusersUNet)sampler.Model.Diffusion.Model;
        Assert.AreEqual(703_750L, network.ParameterCount);
        Assert.AreEqual(network.ParameterCount, network.Shape.CountParameters());
        Assert.AreEqual(3, sampler.Model.ClassCount, "num_class_embeds");
        Assert.IsTrue(network.Shape.LearnedVariance, "out_channels = 2 × in_channels");
        Assert.IsTrue(network.Shape.CenterInputSample);
        Assert.AreEqual(VarianceType.LearnedRange, sampler.Model.Diffusion.Options.Variance);

        double difference = MaxDifference(network, "x2", "t2", "c2", "out2");
        Console.WriteLine($"max |ours - diffusers| (ddpm-class-tiny, fp16 safetensors, labels): {difference:E2}");
        Assert.IsLessThan(Tolerance, difference);
    }

    [TestMethod]
    public void OurStateDictKeysAreTheDiffusersKeys()
    {
        using var scope = NewDisposeScope();
        var fileKeys = Safetensors.LoadStateDict(Path.Combine(Fixture("ddpm-class-tiny"), "unet", "diffusion_pytorch_model.safetensors")).Keys.OrderBy(k => k, StringComparer.Ordinal);
        using var sampler = DiffusersPipeline.Import(new MLContext(), Fixture("ddpm-class-tiny"));
        var ours = sampler.Model.Diffusion.Model.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal);
        CollectionAssert.AreEqual(fileKeys.ToArray(), ours.ToArray());
        Assert.AreEqual("mid_block.attentions.0.to_out.0.weight", DiffusersPipeline.CurrentName("mid_block.attentions.0.proj_attn.weight"));
        Assert.AreEqual("down_blocks.1.attentions.1.to_k.bias", DiffusersPipeline.CurrentName("down_blocks.1.attentions.1.key.bias"));
        Assert.AreEqual("down_blocks.1.resnets.0.conv1.weight", DiffusersPipeline.CurrentName("down_blocks.1.resnets.0.conv1.weight"));
    }

    [TestMethod]
    public void AnImportedSamplerGeneratesWithLabelsAndRoundTripsThroughAModelFile()
    {
        var mlContext = new MLContext(seed: 1);
        var options = new DiffusersImportOptions { Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 3, Spacing = TimestepSpacing.Leading, StepsOffset = 1 }, LabelColumnName = "Label" } };
        using var sampler = DiffusersPipeline.Import(mlContext, Fixture("ddpm-class-tiny"), options);
        var seeds = mlContext.Data.LoadFromEnumerable(new[] { new LabelledSeedRow { Seed = 1, Label = 0 }, new LabelledSeedRow { Seed = 2, Label = 2 } });
        var pixels = MLNetTestData.Pixels(sampler.Transform(seeds));
        Assert.HasCount(3 * 8 * 8, pixels[0]);
        string path = Path.Combine(Path.GetTempPath(), $"diffusers-{Guid.NewGuid():N}.zip");
        try
        {
            sampler.Save(mlContext, path);
            using var loaded = DiffusionSampler.Load(new MLContext(), path);
            Assert.IsInstanceOfType<DiffusersUNet>(loaded.Model.Diffusion.Model);
            CollectionAssert.AreEqual(MLNetTestData.PixelHashes(sampler.Transform(seeds)).ToArray(), MLNetTestData.PixelHashes(loaded.Transform(seeds)).ToArray());
            var ddim = (DdimScheduler)loaded.Options.Scheduler;
            Assert.AreEqual(TimestepSpacing.Leading, ddim.Spacing);
            Assert.AreEqual(1, ddim.StepsOffset);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void AnImportedModelFineTunesFromItsWeightsAndItsLossFalls()
    {
        var mlContext = new MLContext(seed: 1);
        using var imported = DiffusersPipeline.Import(mlContext, Fixture("ddpm-tiny"));
        var data = mlContext.Data.LoadFromEnumerable(ColourPatterns());
        using var images = ImageTensor(ColourPatterns());
        double before = imported.Model.Diffusion.NoisePredictionError(images, seed: 5);

        DiffusionTrainerOptions Options(double learningRate, int steps, DiffusionModel? initial)
        {
            var options = new DiffusionTrainerOptions
            {
                ImageColumnName = nameof(ColourRow.Pixels),
                BatchSize = 8,
                TrainSteps = steps,
                LearningRate = learningRate,
                WarmupSteps = 0,
                EmaDecay = 0,
                Seed = 4,
                LogEvery = 1,
                Sampling = new DiffusionSamplerOptions { Scheduler = new DdimScheduler { Steps = 2 } },
            };
            if (initial is not null)
            {
                options.InitialModel = initial;
            }
            else
            {
                options.ImageSize = 8;
                options.Channels = 3;
                options.Network = imported.Model.Network;
                options.CustomBetas = imported.Model.Diffusion.Schedule.Betas.ToArray();
            }

            return options;
        }

        (DiffusionSampler Sampler, List<double> Losses) Train(DiffusionTrainerOptions options)
        {
            var losses = new List<double>();
            options.Progress = new Recorder(losses);
            return (mlContext.Generative().Diffusion(options).Fit(data), losses);
        }

        var (still, stillLosses) = Train(Options(1e-12, 1, imported.Model));
        var (tuned, tunedLosses) = Train(Options(1e-3, 8, imported.Model));
        var (fresh, freshLosses) = Train(Options(1e-3, 1, null));
        using (still)
        using (tuned)
        using (fresh)
        {
            // Starts from the imported weights: a step that cannot move them (lr 1e-12) ends on them, and its loss — the
            // imported model's loss on the run's first batch — is the fine-tuning run's first loss, not a fresh network's.
            var importedWeights = imported.Model.Diffusion.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            double moved = still.Model.Diffusion.Model.named_parameters().Max(p => (p.parameter - importedWeights[p.name]).abs().max().item<float>());
            Assert.IsLessThan(1e-6, moved, "the learning-rate-1e-12 run keeps the imported weights");
            Assert.AreEqual(stillLosses[0], tunedLosses[0], 1e-6 * stillLosses[0], "the first loss is the imported model's");
            Assert.IsGreaterThan(1e-3, Math.Abs(freshLosses[0] - tunedLosses[0]), "a fresh network has another first loss");

            double after = tuned.Model.Diffusion.NoisePredictionError(images, seed: 5);
            Console.WriteLine($"first losses: imported {tunedLosses[0]:F4}, fresh {freshLosses[0]:F4}; training losses {string.Join(", ", tunedLosses.Select(l => l.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)))}; noise-prediction error on the data {before:F4} → {after:F4}");
            Assert.IsLessThan(before, after, "fine-tuning lowers the error on the training images");
            Assert.IsLessThan(tunedLosses.Take(2).Average(), tunedLosses.Skip(6).Average(), "the training loss falls");
        }
    }

    [TestMethod]
    public void AMissingOrDamagedFolderIsRefusedNamingTheFileAndKey()
    {
        var mlContext = new MLContext();
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => DiffusersPipeline.Import(mlContext, Path.Combine(Path.GetTempPath(), $"missing-{Guid.NewGuid():N}")));

        using var folder = new TempPipeline("ddpm-tiny");
        File.Delete(folder.File("unet/config.json"));
        var missing = Assert.ThrowsExactly<FileNotFoundException>(() => DiffusersPipeline.Import(mlContext, folder.Path));
        StringAssert.Contains(missing.Message, "config.json");

        using var notJson = new TempPipeline("ddpm-tiny");
        File.WriteAllText(notJson.File("scheduler/scheduler_config.json"), "{ \"_class_name\": \"DDPMScheduler\", ");
        var damaged = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(mlContext, notJson.Path));
        StringAssert.Contains(damaged.Message, "scheduler_config.json");

        using var truncated = new TempPipeline("ddpm-tiny");
        string bin = truncated.File("unet/diffusion_pytorch_model.bin");
        File.WriteAllBytes(bin, File.ReadAllBytes(bin)[..5000]);
        var cut = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(mlContext, truncated.Path));
        StringAssert.Contains(cut.Message, "diffusion_pytorch_model.bin");

        using var foreign = new TempPipeline("ddpm-tiny");
        File.Delete(foreign.File("unet/diffusion_pytorch_model.bin"));
        File.WriteAllBytes(foreign.File("unet/diffusion_pytorch_model.safetensors"), File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Data", "PyTorch", "ema.safetensors")));
        var other = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(mlContext, foreign.Path));
        StringAssert.Contains(other.Message, "diffusion_pytorch_model.safetensors");
        StringAssert.Contains(other.Message, "conv_in.weight", "the first weight the file lacks");
    }

    [TestMethod]
    public void UnsupportedBlocksAndKeysAreRefusedByName()
    {
        var cases = new (string File, string Key, JsonNode? Value, string Expected)[]
        {
            ("unet/config.json", "down_block_types", new JsonArray("DownBlock2D", "CrossAttnDownBlock2D"), "down_block_types = \"CrossAttnDownBlock2D\""),
            ("unet/config.json", "up_block_types", new JsonArray("AttnSkipUpBlock2D", "UpBlock2D"), "up_block_types = \"AttnSkipUpBlock2D\""),
            ("unet/config.json", "mid_block_type", "UNetMidBlock2DCrossAttn", "mid_block_type = \"UNetMidBlock2DCrossAttn\""),
            ("unet/config.json", "time_embedding_type", "fourier", "time_embedding_type = \"fourier\""),
            ("unet/config.json", "resnet_time_scale_shift", "scale_shift", "resnet_time_scale_shift = \"scale_shift\""),
            ("unet/config.json", "class_embed_type", "timestep", "class_embed_type = \"timestep\""),
            ("unet/config.json", "_class_name", "UNet2DConditionModel", "_class_name = \"UNet2DConditionModel\""),
            ("unet/config.json", "cross_attention_dim", 768, "key cross_attention_dim is not understood"),
            ("scheduler/scheduler_config.json", "thresholding", true, "thresholding = true"),
            ("scheduler/scheduler_config.json", "variance_type", "learned", "variance_type = \"learned\""),
            ("scheduler/scheduler_config.json", "beta_schedule", "exp", "beta_schedule = \"exp\""),
            ("scheduler/scheduler_config.json", "prediction_type", "flow", "prediction_type = \"flow\""),
            ("scheduler/scheduler_config.json", "clip_sample_range", 2.0, "clip_sample_range = 2"),
            ("model_index.json", "vqvae", new JsonArray("diffusers", "VQModel"), "vqvae"),
        };
        foreach (var (file, key, value, expected) in cases)
        {
            using var folder = new TempPipeline("ddpm-tiny");
            folder.Edit(file, json => json[key] = value?.DeepClone());
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(new MLContext(), folder.Path), $"{file}: {key}");
            StringAssert.Contains(ex.Message, expected, $"{file}: {key}");
            StringAssert.Contains(ex.Message, Path.GetFileName(file), $"the message names the file: {ex.Message}");
        }
    }

    [TestMethod]
    public void MismatchedConfigsAreRefusedNamingBothFilesAndTheKey()
    {
        using (var widths = new TempPipeline("ddpm-tiny"))
        {
            widths.Edit("unet/config.json", json => json["block_out_channels"] = new JsonArray(16, 48));
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(new MLContext(), widths.Path));
            StringAssert.Contains(ex.Message, "diffusion_pytorch_model.bin");
            StringAssert.Contains(ex.Message, "down_blocks.1.resnets.0.conv1.weight", "the first weight whose shape differs");
        }

        using (var variance = new TempPipeline("ddpm-tiny"))
        {
            variance.Edit("scheduler/scheduler_config.json", json => json["variance_type"] = "learned_range");
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(new MLContext(), variance.Path));
            StringAssert.Contains(ex.Message, "variance_type");
            StringAssert.Contains(ex.Message, "scheduler_config.json");
            StringAssert.Contains(ex.Message, "config.json' has in_channels 3, out_channels 3");
        }

        using (var scheduler = new TempPipeline("ddpm-tiny"))
        {
            scheduler.Edit("model_index.json", json => json["scheduler"] = new JsonArray("diffusers", "DDIMScheduler"));
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(new MLContext(), scheduler.Path));
            StringAssert.Contains(ex.Message, "model_index.json");
            StringAssert.Contains(ex.Message, "DDPMScheduler");
        }

        using (var betas = new TempPipeline("ddpm-tiny"))
        {
            betas.Edit("scheduler/scheduler_config.json", json => json["trained_betas"] = new JsonArray(0.1, 0.2));
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(new MLContext(), betas.Path));
            StringAssert.Contains(ex.Message, "trained_betas: 2 values, but num_train_timesteps is 1000");
        }

        using (var both = new TempPipeline("ddpm-class-tiny"))
        {
            both.Edit("unet/config.json", json => json["num_class_embeds"] = 4);
            var ex = Assert.ThrowsExactly<InvalidDataException>(() => DiffusersPipeline.Import(new MLContext(), both.Path));
            StringAssert.Contains(ex.Message, "class_embedding.weight");
        }
    }

    [TestMethod]
    public void AFreshNetworkHasFiniteWeightsAndIdentityNormsAndSavesItsKind()
    {
        var shape = new DiffusersUNetOptions { Channels = 3, BlockOutChannels = new[] { 8, 16 }, NormGroups = 4, LayersPerBlock = 1, MiddleBlockEnabled = false, ClassCount = 2 };
        manual_seed(1);
        using var network = (DiffusersUNet)shape.CreateDenoiser();
        Assert.AreEqual(network.ParameterCount, shape.CountParameters(), "no middle block, class embedding");
        foreach (var (name, parameter) in network.named_parameters())
        {
            Assert.IsTrue(parameter.isfinite().all().item<bool>() && parameter.abs().max().item<float>() < 10, name);
            if (name.EndsWith("norm1.weight", StringComparison.Ordinal) || name.EndsWith("group_norm.weight", StringComparison.Ordinal))
            {
                Assert.AreEqual(1f, parameter.min().item<float>(), name);
                Assert.AreEqual(1f, parameter.max().item<float>(), name);
            }
        }

        var json = JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize<DenoiserOptions>(shape))!.AsObject();
        Assert.AreEqual(DiffusersUNetOptions.KindName, (string?)json["Kind"]);
        var back = (DiffusersUNetOptions)System.Text.Json.JsonSerializer.Deserialize<DenoiserOptions>(json.ToJsonString())!;
        Assert.IsFalse(back.MiddleBlockEnabled);
        CollectionAssert.AreEqual(new[] { 8, 16 }, back.BlockOutChannels.ToArray());
        var refused = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DiffusersUNetOptions { DownBlockTypes = new[] { "DownBlock2D", "CrossAttnDownBlock2D" } }.Validate());
        StringAssert.Contains(refused.Message, "CrossAttnDownBlock2D");
    }

    [TestMethod]
    public void TheUNetMovesToAnotherDeviceWithEveryParameter()
    {
        if (!cuda.is_available())
        {
            Assert.Inconclusive("No CUDA device: the device move is checked where one exists.");
        }

        using var sampler = DiffusersPipeline.Import(new MLContext(), Fixture("ddpm-tiny"));
        var network = sampler.Model.Diffusion.Model;
        network.to(CUDA);
        Assert.IsTrue(network.parameters().All(p => p.device_type == DeviceType.CUDA));
        using var scope = NewDisposeScope();
        var output = network.forward(randn(2, 3, 8, 8, device: CUDA), tensor(new long[] { 1, 500 }, device: CUDA), null);
        Assert.AreEqual(DeviceType.CUDA, output.device_type);
    }

    internal static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Data", "Diffusers", name);

    private static double MaxDifference(DiffusersUNet network, string x, string t, string? classes, string expected)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var reference = Safetensors.LoadStateDict(Fixture("reference.safetensors"));
        var output = network.forward(reference[x], reference[t], classes is null ? null : reference[classes]);
        return (output - reference[expected]).abs().max().item<float>();
    }

    private static List<ColourRow> ColourPatterns()
    {
        var rows = new List<ColourRow>();
        for (int i = 0; i < 16; i++)
        {
            var pixels = new float[3 * 8 * 8];
            for (int c = 0; c < 3; c++)
            {
                for (int y = 0; y < 8; y++)
                {
                    for (int x = 0; x < 8; x++)
                    {
                        pixels[(c * 64) + (y * 8) + x] = ((x + y + i + c) % 4 < 2) ^ (c == i % 3) ? 230 : 25;
                    }
                }
            }

            rows.Add(new ColourRow { Pixels = pixels });
        }

        return rows;
    }

    private static Tensor ImageTensor(List<ColourRow> rows)
    {
        var values = rows.SelectMany(r => r.Pixels.Select(p => (p / 127.5f) - 1)).ToArray();
        return tensor(values, new long[] { rows.Count, 3, 8, 8 });
    }

    public sealed class ColourRow
    {
        [VectorType(192)]
        public float[] Pixels { get; set; } = Array.Empty<float>();
    }

    private sealed class Recorder(List<double> losses) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => losses.Add(value.Loss);
    }

    /// <summary>A copy of a fixture folder to damage.</summary>
    private sealed class TempPipeline : IDisposable
    {
        public TempPipeline(string fixture)
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"diffusers-{Guid.NewGuid():N}");
            string source = Fixture(fixture);
            foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
            {
                string target = System.IO.Path.Combine(Path, System.IO.Path.GetRelativePath(source, file));
                Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
                System.IO.File.Copy(file, target);
            }
        }

        public string Path { get; }

        public string File(string relative) => System.IO.Path.Combine(Path, relative);

        public void Edit(string relative, Action<JsonObject> edit)
        {
            var json = JsonNode.Parse(System.IO.File.ReadAllText(File(relative)))!.AsObject();
            edit(json);
            System.IO.File.WriteAllText(File(relative), json.ToJsonString());
        }

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
