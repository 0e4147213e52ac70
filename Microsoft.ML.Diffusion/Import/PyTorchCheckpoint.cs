using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;
using Microsoft.ML.Runtime;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>
/// Imports checkpoints of denoising-diffusion-pytorch 2.1.1 (lucidrains): a <c>model-N.pt</c> written by its
/// <c>Trainer.save</c> (the <c>ema</c> or <c>model</c> entry), a <c>torch.save</c>d state dict of its <c>GaussianDiffusion</c>,
/// <c>EMA</c> or <c>Unet</c>, or the same as a safetensors file.
/// </summary>
/// <remarks>
/// <para>Our <see cref="UNet"/> is that library's <c>Unet</c> layer for layer, so the import is a renaming of parameters
/// (<see cref="ReferenceName"/>): every parameter must be found with the same shape and the U-Net's part of the file must
/// hold nothing else, or an <see cref="InvalidDataException"/> names the parameter. The β values come from the file's
/// <c>betas</c> buffer when it has one. Its objective, image size and U-Net shape are constructor arguments that files do
/// not record: give them in <see cref="PyTorchImportOptions"/>.</para>
/// <para>Files are read with TorchSharp.PyBridge (pickle through Razorvine.Pickle, which builds dictionaries, lists and
/// tensors and never runs code from the file; only the zip format of <c>torch.save</c> since PyTorch 1.6 is read).</para>
/// </remarks>
public static class PyTorchCheckpoint
{
    /// <summary>Imports a checkpoint as a sampler that generates as the reference does (sampling options aside).</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="path">A <c>.pt</c>/<c>.pth</c>/<c>.ckpt</c> file (zip format) or a <c>.safetensors</c> file.</param>
    /// <param name="options">The reference's constructor arguments.</param>
    /// <returns>The sampler (on the CPU); save it with <c>mlContext.Model.Save</c> like a trained one.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file cannot be read, or its weights do not fit the options (the message names the parameter).</exception>
    public static DiffusionSampler Import(MLContext mlContext, string path, PyTorchImportOptions options)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Checkpoint '{path}' does not exist.", path);
        }

        Dictionary<string, (long[] Shape, float[] Values)> weights;
        string prefix;
        GaussianDiffusionOptions model;
        int trainedSteps;
        try
        {
            using var scope = NewDisposeScope(); // every tensor read from the file is released here; the weights leave as arrays
            var (state, step) = Read(path, options.Weights);
            prefix = UNetPrefix(state, options.Weights)
                ?? throw new InvalidDataException($"Checkpoint '{path}' holds no denoising-diffusion-pytorch U-Net (no key ending in 'init_conv.weight').");
            string diffusionPrefix = prefix.EndsWith("model.", StringComparison.Ordinal) ? prefix[..^"model.".Length] : prefix;
            model = options.DescribeModel(state.TryGetValue(diffusionPrefix + "betas", out var betas) ? betas.to(float64).data<double>().ToArray() : null);
            model.Validate();
            trainedSteps = step;
            weights = UNetWeights(state, prefix);
        }
        catch (Exception ex) when (ex is not (InvalidDataException or FileNotFoundException))
        {
            throw new InvalidDataException($"Checkpoint '{path}' could not be read as a denoising-diffusion-pytorch checkpoint: {ex.Message}", ex);
        }

        var diffusion = model.CreateDiffusion();
        try
        {
            CopyWeights((UNet)diffusion.Model, weights, prefix, path);
            diffusion.eval();
            var config = new DiffusionModelConfig
            {
                Diffusion = diffusion.Options,
                TrainedSteps = trainedSteps,
                Sampling = options.Sampling?.Clone() ?? new DiffusionSamplerOptions(),
            };
            return new DiffusionSampler(mlContext, new DiffusionModel(config, diffusion), config.Sampling);
        }
        catch
        {
            diffusion.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The name in denoising-diffusion-pytorch's <c>Unet.state_dict()</c> of one of our <see cref="UNet"/>'s parameters:
    /// our named fields stand for its positional <c>ModuleList</c>/<c>Sequential</c> entries.
    /// </summary>
    /// <param name="name">A name from <c>unet.named_parameters()</c>, e.g. <c>downs.0.block1.block1_proj.weight</c>.</param>
    /// <returns>The reference name, e.g. <c>downs.0.0.block1.proj.weight</c>.</returns>
    internal static string ReferenceName(string name)
    {
        var parts = name.Split('.');
        for (int i = 0; i < parts.Length; i++)
        {
            parts[i] = parts[i] switch
            {
                "time_mlp_in" => "time_mlp.1",      // Sequential(SinusoidalPosEmb, Linear, GELU, Linear)
                "time_mlp_out" => "time_mlp.3",
                "block1" => "0",                    // a level: ModuleList(ResnetBlock, ResnetBlock, attention, resample)
                "block2" => "1",
                "attn" => "2",
                "resample" => "3",
                "conv" when i > 0 && parts[i - 1] == "3" => "1", // Downsample/Upsample: Sequential(Rearrange or Upsample, Conv2d)
                "mlp" => "mlp.1",                   // ResnetBlock.mlp: Sequential(SiLU, Linear)
                "block1_proj" => "block1.proj",     // ResnetBlock.block1/block2: Block(proj, norm, act, dropout)
                "block1_norm" => "block1.norm",
                "block2_proj" => "block2.proj",
                "block2_norm" => "block2.norm",
                "to_out_conv" => "to_out.0",        // LinearAttention.to_out: Sequential(Conv2d, RMSNorm)
                "to_out_norm" => "to_out.1",
                string other => other,
            };
        }

        return string.Join('.', parts);
    }

    private static (Dictionary<string, Tensor> State, int Step) Read(string path, PyTorchWeights weights)
    {
        if (IsSafetensors(path))
        {
            return (Safetensors.LoadStateDict(path), 0);
        }

        Hashtable root = PyTorchUnpickler.UnpickleStateDict(path);
        int step = root["step"] is int s ? s : 0;
        string entry = weights == PyTorchWeights.Ema ? "ema" : "model";
        Hashtable dictionary = root;
        if (root["model"] is Hashtable || root["ema"] is Hashtable)
        {
            dictionary = root[entry] as Hashtable
                ?? throw new InvalidDataException($"Checkpoint '{path}' is a training checkpoint without a '{entry}' entry (it has: {string.Join(", ", root.Keys.Cast<object>())}).");
        }

        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry item in dictionary)
        {
            if (item.Key is string key && item.Value is Tensor tensor)
            {
                state[key] = tensor;
            }
        }

        return (state, step);
    }

    internal static bool IsSafetensors(string path)
    {
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        // Otherwise by content: torch.save writes a zip file ("PK"); safetensors starts with a header length and '{'.
        using var stream = File.OpenRead(path);
        Span<byte> start = stackalloc byte[9];
        return stream.Read(start) == 9 && start[8] == (byte)'{';
    }

    /// <summary>Where the U-Net's keys start: the EMA copy, the online copy, a GaussianDiffusion's model or a bare U-Net.</summary>
    private static string? UNetPrefix(Dictionary<string, Tensor> state, PyTorchWeights weights)
    {
        string[] candidates = weights == PyTorchWeights.Ema
            ? new[] { "ema_model.model.", "model.", string.Empty }
            : new[] { "online_model.model.", "model.", string.Empty };
        return candidates.FirstOrDefault(p => state.ContainsKey(p + "init_conv.weight"));
    }

    /// <summary>The U-Net's part of a state dict (its keys start with the prefix; for a bare U-Net, all but diffusion buffers) as arrays.</summary>
    private static Dictionary<string, (long[] Shape, float[] Values)> UNetWeights(Dictionary<string, Tensor> state, string prefix)
    {
        var weights = new Dictionary<string, (long[] Shape, float[] Values)>(StringComparer.Ordinal);
        foreach (var (key, tensor) in state)
        {
            bool unet = prefix.Length > 0 ? key.StartsWith(prefix, StringComparison.Ordinal) : !IsDiffusionBuffer(key);
            if (unet && tensor.is_floating_point())
            {
                weights[key] = (tensor.shape, tensor.to(float32).contiguous().data<float>().ToArray());
            }
        }

        return weights;
    }

    private static void CopyWeights(UNet unet, Dictionary<string, (long[] Shape, float[] Values)> weights, string prefix, string path)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
        {
            foreach (var (name, parameter) in unet.named_parameters())
            {
                string key = prefix + ReferenceName(name);
                if (!weights.TryGetValue(key, out var source))
                {
                    throw new InvalidDataException($"Checkpoint '{path}' has no '{key}' (our {name}, shape [{string.Join(", ", parameter.shape)}]): the file's U-Net has another shape than PyTorchImportOptions.Network describes.");
                }

                if (!source.Shape.SequenceEqual(parameter.shape))
                {
                    throw new InvalidDataException(
                        $"Checkpoint '{path}': '{key}' has shape [{string.Join(", ", source.Shape)}], the U-Net of PyTorchImportOptions.Network needs [{string.Join(", ", parameter.shape)}].");
                }

                using var values = tensor(source.Values, source.Shape);
                parameter.copy_(values);
                used.Add(key);
            }
        }

        var unexpected = weights.Keys.Where(k => !used.Contains(k)).ToList();
        if (unexpected.Count > 0)
        {
            throw new InvalidDataException(
                $"Checkpoint '{path}' has U-Net weights that PyTorchImportOptions.Network does not describe: {string.Join(", ", unexpected.Take(5))}{(unexpected.Count > 5 ? ", …" : string.Empty)}.");
        }
    }

    private static bool IsDiffusionBuffer(string key) => key is "betas" or "alphas_cumprod" or "alphas_cumprod_prev" or "sqrt_alphas_cumprod"
        or "sqrt_one_minus_alphas_cumprod" or "log_one_minus_alphas_cumprod" or "sqrt_recip_alphas_cumprod" or "sqrt_recipm1_alphas_cumprod"
        or "posterior_variance" or "posterior_log_variance_clipped" or "posterior_mean_coef1" or "posterior_mean_coef2" or "loss_weight";
}
