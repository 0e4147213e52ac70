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
/// Imports checkpoints of openai's improved-diffusion and guided-diffusion — the <c>.pt</c> state dicts their training
/// scripts write (<c>ema_0.9999_200000.pt</c>, <c>model200000.pt</c>) and their published models — as a
/// <see cref="DiffusionSampler"/> that generates as their <c>image_sample.py</c> does, from the flags it was run with.
/// </summary>
/// <remarks>
/// <para>Our <see cref="ImprovedDiffusionUNet"/> has their <c>UNetModel</c>'s parameter names, so the import is a load:
/// every parameter must be in the file with the shape the flags give, and the file must hold nothing else, or an
/// <see cref="InvalidDataException"/> names the file, the key and both shapes. float16 files (<c>--use_fp16</c>) are
/// read and computed in float32.</para>
/// <para>Files are read with TorchSharp.PyBridge (pickle through Razorvine.Pickle, which builds dictionaries and tensors
/// and never runs code from the file; the zip format of <c>torch.save</c> since PyTorch 1.6). Nothing is downloaded.</para>
/// </remarks>
public static class ImprovedDiffusionCheckpoint
{
    /// <summary>The input column of class labels (key or integer) a class-conditional import reads unless the sampler options name another.</summary>
    public const string DefaultLabelColumnName = "Label";

    /// <summary>A key every improved-diffusion or guided-diffusion <c>UNetModel</c> state dict has.</summary>
    private const string FirstKey = "input_blocks.0.0.weight";

    /// <summary>Imports a checkpoint from the flags it was trained and sampled with.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="path">A <c>.pt</c> state dict.</param>
    /// <param name="flags">Their script's flags, for example <c>--image_size 64 --num_channels 128 --num_res_blocks 3 --learn_sigma True --diffusion_steps 4000 --noise_schedule cosine</c>.</param>
    /// <param name="codebase">The code base that wrote the checkpoint (its defaults fill the flags not given).</param>
    /// <returns>The sampler (on the CPU); save it with <c>mlContext.Model.Save</c> like a trained one.</returns>
    /// <exception cref="ArgumentException">A flag is unknown, refused or invalid (the message names it).</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file cannot be read, or its weights do not fit the flags (the message names the key and both shapes).</exception>
    public static DiffusionSampler Import(MLContext mlContext, string path, string flags, ImprovedDiffusionCodebase codebase = ImprovedDiffusionCodebase.ImprovedDiffusion)
    {
        ArgumentNullException.ThrowIfNull(flags);
        return Import(mlContext, path, ImprovedDiffusionImportOptions.Parse(flags, codebase));
    }

    /// <summary>Imports a checkpoint from its flags, given as options.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="path">A <c>.pt</c> state dict.</param>
    /// <param name="options">The flags.</param>
    /// <returns>The sampler (on the CPU); save it with <c>mlContext.Model.Save</c> like a trained one.</returns>
    /// <exception cref="ArgumentException">A flag is invalid (the message names it).</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file cannot be read, or its weights do not fit the flags (the message names the key and both shapes).</exception>
    public static DiffusionSampler Import(MLContext mlContext, string path, ImprovedDiffusionImportOptions options)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        var model = options.DescribeModel();
        model.Validate();
        options.Sampling?.Validate();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Checkpoint '{path}' does not exist.", path);
        }

        var diffusion = model.CreateDiffusion();
        try
        {
            using (NewDisposeScope())
            {
                // Every tensor read from the file is released here; the network (made outside the scope) keeps the copies.
                CopyWeights(diffusion.Model, Read(path), path, options);
            }

            diffusion.eval();
            var config = new DiffusionModelConfig
            {
                Diffusion = diffusion.Options,
                LabelColumnName = options.ClassCond ? DefaultLabelColumnName : null,
                Sampling = options.SamplerOptions(diffusion.Timesteps),
            };
            return new DiffusionSampler(mlContext, new DiffusionModel(config, diffusion), config.Sampling);
        }
        catch
        {
            diffusion.Dispose();
            throw;
        }
    }

    private static Dictionary<string, Tensor> Read(string path)
    {
        Hashtable root;
        try
        {
            root = PyTorchUnpickler.UnpickleStateDict(path);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new InvalidDataException($"Checkpoint '{path}' could not be read as a PyTorch state dict (torch.save's zip format): {ex.Message}", ex);
        }

        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry item in root)
        {
            if (item.Key is string key && item.Value is Tensor tensor)
            {
                state[key] = tensor;
            }
        }

        if (!state.ContainsKey(FirstKey))
        {
            var keys = root.Keys.Cast<object>().Select(k => k.ToString()).Take(8).ToList();
            throw new InvalidDataException(
                $"Checkpoint '{path}' holds no improved-diffusion or guided-diffusion UNetModel state dict: it has no '{FirstKey}' (its keys: {string.Join(", ", keys)}{(root.Count > keys.Count ? ", …" : string.Empty)}).");
        }

        return state;
    }

    private static void CopyWeights(Denoiser network, Dictionary<string, Tensor> state, string path, ImprovedDiffusionImportOptions options)
    {
        var expected = network.named_parameters().ToList();
        foreach (var (name, parameter) in expected)
        {
            if (!state.TryGetValue(name, out var source))
            {
                throw new InvalidDataException(
                    $"Checkpoint '{path}' has no '{name}' (shape [{string.Join(", ", parameter.shape)}] for the flags {options.DescribeNetworkFlags()}): the file's network has another shape than the flags describe.");
            }

            if (!source.shape.SequenceEqual(parameter.shape))
            {
                throw new InvalidDataException(
                    $"Checkpoint '{path}': '{name}' has shape [{string.Join(", ", source.shape)}], the flags {options.DescribeNetworkFlags()} give [{string.Join(", ", parameter.shape)}].");
            }

            if (!source.is_floating_point())
            {
                throw new InvalidDataException($"Checkpoint '{path}': '{name}' holds {source.dtype} values, not floating-point weights.");
            }
        }

        var names = expected.Select(p => p.name).ToHashSet(StringComparer.Ordinal);
        var unexpected = state.Keys.Where(k => !names.Contains(k)).ToList();
        if (unexpected.Count > 0)
        {
            string hint = unexpected.Any(k => k.StartsWith("label_emb", StringComparison.Ordinal)) ? " (a class-conditional network: add --class_cond True)" : string.Empty;
            throw new InvalidDataException(
                $"Checkpoint '{path}' has weights that the flags {options.DescribeNetworkFlags()} do not describe{hint}: {string.Join(", ", unexpected.Take(5))}{(unexpected.Count > 5 ? ", …" : string.Empty)}.");
        }

        using (no_grad())
        {
            foreach (var (name, parameter) in expected)
            {
                var values = state[name].to(parameter.dtype);
                if (!values.isfinite().all().item<bool>())
                {
                    throw new InvalidDataException($"Checkpoint '{path}': '{name}' holds values that are not finite.");
                }

                parameter.copy_(values);
            }
        }
    }
}
