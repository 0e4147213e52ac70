using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>
/// Imports a Hugging Face diffusers DDPM or DDIM pipeline folder (as <c>save_pretrained</c> writes it and the Hub serves
/// it, e.g. <c>google/ddpm-cifar10-32</c>): its <c>UNet2DModel</c> becomes a <see cref="DiffusersUNet"/> with the same
/// weights, its scheduler config our schedule, objective, variance and sampler.
/// </summary>
/// <remarks>
/// <para>The folder holds <c>model_index.json</c> (optional: when present it must name a <c>UNet2DModel</c> as
/// <c>unet</c>, a scheduler, and nothing else), <c>unet/config.json</c>, the weights
/// <c>unet/diffusion_pytorch_model.safetensors</c> or <c>unet/diffusion_pytorch_model.bin</c> (or their <c>.fp16</c>
/// variants; fp16 and bf16 weights are converted to fp32), and <c>scheduler/scheduler_config.json</c>.</para>
/// <para>Every config key is either mapped, ignored because it cannot change the result (its name is listed in the
/// README), or refused with an <see cref="InvalidDataException"/> naming the file, the key and its value. Weights load by
/// name — our parameter names are diffusers' — after renaming the attention projections of checkpoints written by
/// diffusers before 0.14 (<c>query</c>, <c>key</c>, <c>value</c>, <c>proj_attn</c> → <c>to_q</c>, <c>to_k</c>,
/// <c>to_v</c>, <c>to_out.0</c>); a missing, surplus or misshapen weight is an error naming the file and the key. Nothing
/// is downloaded and nothing half-built is returned.</para>
/// <para>Files are read with TorchSharp.PyBridge: safetensors, and for <c>.bin</c> the zip format of <c>torch.save</c>
/// (PyTorch 1.6 and later) through a pickle reader that builds dictionaries and tensors and never runs code from the file.</para>
/// </remarks>
public static class DiffusersPipeline
{
    /// <summary>The weight files looked for in <c>unet/</c>, in this order.</summary>
    internal static readonly string[] WeightFiles =
    {
        "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin",
    };

    private static readonly Dictionary<string, string> OldAttentionNames = new(StringComparer.Ordinal)
    {
        ["query"] = "to_q",
        ["key"] = "to_k",
        ["value"] = "to_v",
        ["proj_attn"] = "to_out.0",
    };

    /// <summary>Imports a pipeline folder as a sampler that generates as the pipeline does (up to the sampling options).</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="folder">The pipeline folder (holding <c>unet/</c> and <c>scheduler/</c>).</param>
    /// <param name="options">What to take from the caller rather than the folder; null for none.</param>
    /// <returns>The sampler (on the CPU); save it with <c>mlContext.Model.Save</c> like a trained one, or train it further
    /// with <see cref="DiffusionTrainerOptions.InitialModel"/>.</returns>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A required file is missing (the message names it).</exception>
    /// <exception cref="InvalidDataException">A file is damaged, foreign or disagrees with another (the message names the file and key).</exception>
    public static DiffusionSampler Import(MLContext mlContext, string folder, DiffusersImportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new DiffusersImportOptions();
        options.Validate();
        var (model, weightsPath, sampling) = Describe(folder, options);
        var diffusion = model.CreateDiffusion();
        try
        {
            LoadWeights((DiffusersUNet)diffusion.Model, weightsPath);
            diffusion.eval();
            var config = new DiffusionModelConfig { Diffusion = diffusion.Options, TrainedSteps = 0, Sampling = sampling };
            return new DiffusionSampler(mlContext, new DiffusionModel(config, diffusion), config.Sampling);
        }
        catch
        {
            diffusion.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads a pipeline folder's configs into our model description, the path of its weights and its sampling settings,
    /// without reading the weights.
    /// </summary>
    internal static (GaussianDiffusionOptions Model, string WeightsPath, DiffusionSamplerOptions Sampling) Describe(string folder, DiffusersImportOptions options)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"The diffusers pipeline folder '{folder}' does not exist.");
        }

        string indexPath = Path.Combine(folder, "model_index.json");
        string? indexedScheduler = File.Exists(indexPath) ? ReadIndex(DiffusersConfigFile.Read(indexPath)) : null;
        var unetFile = DiffusersConfigFile.Read(Path.Combine(folder, "unet", "config.json"));
        var (network, sampleSize) = DiffusersConfigs.ReadUNet(unetFile);
        var schedulerFile = DiffusersConfigFile.Read(Path.Combine(folder, "scheduler", "scheduler_config.json"));
        var scheduler = DiffusersConfigs.ReadScheduler(schedulerFile);
        if (indexedScheduler is not null && indexedScheduler != scheduler.ClassName)
        {
            throw new InvalidDataException($"'{indexPath}' names the scheduler {indexedScheduler}, but '{schedulerFile.Path}' holds a {scheduler.ClassName} (_class_name): the folder mixes two pipelines.");
        }

        var variance = scheduler.Variance ?? (network.LearnedVariance ? VarianceType.LearnedRange : VarianceType.FixedSmall);
        if ((variance == VarianceType.LearnedRange) != network.LearnedVariance)
        {
            throw new InvalidDataException(
                $"'{schedulerFile.Path}': variance_type {(variance == VarianceType.LearnedRange ? "learned_range needs" : "is fixed, which needs")} a UNet with "
                + $"{(variance == VarianceType.LearnedRange ? "twice" : "as many")} out_channels as in_channels, but '{unetFile.Path}' has in_channels {network.Channels}, out_channels {network.Channels * (network.LearnedVariance ? 2 : 1)}.");
        }

        int height, width;
        if (options.ImageSize is int side)
        {
            height = width = side;
        }
        else if (sampleSize is not null)
        {
            (height, width) = (sampleSize[0], sampleSize[^1]);
        }
        else
        {
            throw new InvalidDataException($"'{unetFile.Path}' has no sample_size: give the image size in DiffusersImportOptions.ImageSize.");
        }

        var model = new GaussianDiffusionOptions
        {
            ImageHeight = height,
            ImageWidth = width,
            Schedule = scheduler.Family,
            Betas = scheduler.Betas,
            Objective = scheduler.Objective,
            Variance = variance,
            Network = network,
        };
        try
        {
            model.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new InvalidDataException($"The pipeline in '{folder}' does not describe a model the library can build: {ex.Message.Split(" (Parameter", 2)[0]}", ex);
        }

        var sampling = options.Sampling?.Clone() ?? new DiffusionSamplerOptions { Scheduler = scheduler.Scheduler };
        sampling.ClipDenoised = scheduler.ClipDenoised;
        try
        {
            using var fitted = sampling.Scheduler.Clone();
            fitted.SetTimesteps(model.CreateSchedule());
        }
        catch (ArgumentException ex)
        {
            throw new InvalidDataException($"The sampler does not fit the {model.Betas!.Count} timesteps of '{schedulerFile.Path}': {ex.Message.Split(" (Parameter", 2)[0]}", ex);
        }

        return (model, FindWeights(folder), sampling);
    }

    /// <summary>Our name for a key of a diffusers UNet2DModel state dict: the old attention names renamed, others unchanged.</summary>
    /// <param name="key">The key, e.g. <c>mid_block.attentions.0.proj_attn.weight</c>.</param>
    /// <returns>The current name, e.g. <c>mid_block.attentions.0.to_out.0.weight</c>.</returns>
    internal static string CurrentName(string key)
    {
        var parts = key.Split('.');
        if (parts.Length >= 4 && parts[^4] == "attentions" && OldAttentionNames.TryGetValue(parts[^2], out var current))
        {
            parts[^2] = current;
            return string.Join('.', parts);
        }

        return key;
    }

    /// <summary>Loads a weight file into the network by name; every parameter must be found once with its shape, and nothing else may be there.</summary>
    internal static void LoadWeights(DiffusersUNet network, string path)
    {
        using var scope = NewDisposeScope(); // every tensor read from the file is released here
        Dictionary<string, Tensor> state;
        try
        {
            state = ReadState(path);
        }
        catch (Exception ex) when (!ex.Message.Contains(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"'{path}' could not be read as a diffusers weight file (safetensors, or the zip format of torch.save): {ex.Message}", ex);
        }

        var byName = new Dictionary<string, (string FileKey, Tensor Value)>(StringComparer.Ordinal);
        foreach (var (key, value) in state)
        {
            string name = CurrentName(key);
            if (byName.TryGetValue(name, out var other))
            {
                throw new InvalidDataException($"'{path}' holds both '{other.FileKey}' and '{key}', two names of the same weight.");
            }

            byName[name] = (key, value);
        }

        using (no_grad())
        {
            foreach (var (name, parameter) in network.named_parameters())
            {
                if (!byName.Remove(name, out var source))
                {
                    throw new InvalidDataException(
                        $"'{path}' has no '{name}' (shape [{string.Join(", ", parameter.shape)}]): the weights do not belong to the UNet that unet/config.json describes.");
                }

                if (!source.Value.is_floating_point() || !source.Value.shape.SequenceEqual(parameter.shape))
                {
                    throw new InvalidDataException(
                        $"'{path}': '{source.FileKey}' is {source.Value.dtype} [{string.Join(", ", source.Value.shape)}], but the UNet of unet/config.json needs floating point [{string.Join(", ", parameter.shape)}].");
                }

                parameter.copy_(source.Value.to(float32));
            }
        }

        if (byName.Count > 0)
        {
            var extra = byName.Values.Select(v => v.FileKey).ToList();
            throw new InvalidDataException(
                $"'{path}' has weights that the UNet of unet/config.json does not have: {string.Join(", ", extra.Take(5))}{(extra.Count > 5 ? ", …" : string.Empty)}.");
        }
    }

    private static Dictionary<string, Tensor> ReadState(string path)
    {
        if (PyTorchCheckpoint.IsSafetensors(path))
        {
            return Safetensors.LoadStateDict(path);
        }

        Hashtable root = PyTorchUnpickler.UnpickleStateDict(path);
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry item in root)
        {
            state[item.Key as string ?? throw new InvalidDataException($"'{path}' holds a key '{item.Key}' that is not a string: not a state dict.")] =
                item.Value as Tensor ?? throw new InvalidDataException($"'{path}': '{item.Key}' is not a tensor: not a UNet2DModel state dict.");
        }

        return state;
    }

    private static string FindWeights(string folder)
    {
        string unet = Path.Combine(folder, "unet");
        foreach (var name in WeightFiles)
        {
            string path = Path.Combine(unet, name);
            if (File.Exists(path))
            {
                return path;
            }
        }

        throw new FileNotFoundException($"'{unet}' holds no UNet weights: expected {string.Join(" or ", WeightFiles)}.", Path.Combine(unet, WeightFiles[0]));
    }

    /// <summary>Checks <c>model_index.json</c>: a UNet2DModel as <c>unet</c>, a scheduler, no other component. Returns the scheduler's class.</summary>
    private static string ReadIndex(DiffusersConfigFile index)
    {
        index.Ignore("_class_name", "_diffusers_version", "_name_or_path");
        var unet = index.Strings("unet", null) ?? throw index.Mismatch("unet", "missing: the pipeline has no UNet to import.");
        if (unet.Length != 2 || unet[1] != "UNet2DModel")
        {
            throw index.Unsupported("unet", $"[{string.Join(", ", unet)}]", "[\"diffusers\", \"UNet2DModel\"]");
        }

        var scheduler = index.Strings("scheduler", null) ?? throw index.Mismatch("scheduler", "missing: the pipeline has no scheduler.");
        if (scheduler.Length != 2)
        {
            throw index.Unsupported("scheduler", $"[{string.Join(", ", scheduler)}]", "[library, class]");
        }

        var others = index.UnreadKeys();
        if (others.Count > 0)
        {
            throw index.Unsupported(others[0], "(a pipeline component)", "pipelines of a UNet2DModel and a scheduler only (DDPMPipeline, DDIMPipeline)");
        }

        return scheduler[1];
    }
}
