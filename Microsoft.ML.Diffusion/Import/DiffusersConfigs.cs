using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>What a diffusers scheduler config says, mapped onto our settings.</summary>
/// <param name="ClassName">The scheduler's <c>_class_name</c> (DDPMScheduler, DDIMScheduler, or another).</param>
/// <param name="Family">The β schedule's family, a label for our <see cref="GaussianDiffusionOptions.Schedule"/>.</param>
/// <param name="Betas">The exact β values, as diffusers computes them (float32).</param>
/// <param name="Objective">The prediction type.</param>
/// <param name="Variance">The variance type (DDPMScheduler's <c>variance_type</c>), or null where the scheduler has none.</param>
/// <param name="ClipDenoised">Whether x̂₀ is clamped to [−1, 1] (<c>clip_sample</c>).</param>
/// <param name="Scheduler">Our scheduler that steps as the pipeline's does.</param>
internal sealed record DiffusersSchedulerSettings(
    string ClassName, BetaSchedule Family, double[] Betas, PredictionTarget Objective, VarianceType? Variance, bool ClipDenoised, DiffusionScheduler Scheduler);

/// <summary>
/// Reads diffusers' <c>unet/config.json</c> (UNet2DModel) and <c>scheduler/scheduler_config.json</c> onto our options,
/// refusing every key whose value we cannot honour by name.
/// </summary>
internal static class DiffusersConfigs
{
    /// <summary>The scheduler classes whose own settings are mapped (others give only their schedule and objective).</summary>
    public static readonly string[] SteppedSchedulers = { "DDPMScheduler", "DDIMScheduler" };

    private const string Silu = "silu";

    /// <summary>Reads a UNet2DModel <c>config.json</c>.</summary>
    /// <param name="file">The file.</param>
    /// <returns>The network's shape and its <c>sample_size</c> (null when not given).</returns>
    /// <exception cref="InvalidDataException">A key is malformed or not supported (the message names the file and key).</exception>
    public static (DiffusersUNetOptions Network, int[]? SampleSize) ReadUNet(DiffusersConfigFile file)
    {
        string? className = file.String("_class_name", null);
        if (className is not null && className != "UNet2DModel")
        {
            throw file.Unsupported("_class_name", $"\"{className}\"", "\"UNet2DModel\" (the network of DDPM and DDIM pipelines)");
        }

        file.Ignore("_diffusers_version", "_name_or_path", "_use_default_values", "num_train_timesteps");
        var sampleSize = file.IntOrInts("sample_size");
        if (sampleSize is not null && (sampleSize.Length is < 1 or > 2 || sampleSize.Any(s => s < 1)))
        {
            throw file.Unsupported("sample_size", $"[{string.Join(", ", sampleSize)}]", "a positive side, or [height, width]");
        }

        int inChannels = file.Int("in_channels", 3)!.Value;
        int outChannels = file.Int("out_channels", 3)!.Value;
        if (outChannels != inChannels && outChannels != 2 * inChannels)
        {
            throw file.Mismatch("out_channels", Invariant($"{outChannels} must equal in_channels ({inChannels}), or twice it for a learned variance."));
        }

        file.Choice("time_embedding_type", "positional", "positional");
        file.Choice("act_fn", Silu, Silu, "swish");
        file.Choice("resnet_time_scale_shift", "default", "default");
        file.Choice("downsample_type", "conv", "conv");
        file.Choice("upsample_type", "conv", "conv");
        if (file.String("class_embed_type", null) is string classEmbedding)
        {
            throw file.Unsupported("class_embed_type", $"\"{classEmbedding}\"", "null (an nn.Embedding of num_class_embeds rows)");
        }

        var options = new DiffusersUNetOptions
        {
            Channels = inChannels,
            LearnedVariance = outChannels == 2 * inChannels,
            ClassCount = file.Int("num_class_embeds", 0)!.Value,
            CenterInputSample = file.Bool("center_input_sample", false),
            FreqShift = file.Int("freq_shift", 0)!.Value,
            FlipSinToCos = file.Bool("flip_sin_to_cos", true),
            TimeEmbeddingDim = file.Int("time_embedding_dim", null),
            BlockOutChannels = file.Ints("block_out_channels", new[] { 224, 448, 672, 896 })!,
            DownBlockTypes = file.Strings("down_block_types", new[] { "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D" })!,
            UpBlockTypes = file.Strings("up_block_types", new[] { "AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D" })!,
            LayersPerBlock = file.Int("layers_per_block", 2)!.Value,
            MidBlockScaleFactor = file.Double("mid_block_scale_factor", 1),
            DownsamplePadding = file.Int("downsample_padding", 1)!.Value,
            Dropout = file.Double("dropout", 0),
            AttentionHeadDim = file.IsNull("attention_head_dim") ? null : file.Int("attention_head_dim", 8), // null: one head as wide as the block
            NormGroups = file.Int("norm_num_groups", 32)!.Value,
            AttentionNormGroups = file.Int("attn_norm_num_groups", null),
            NormEps = file.Double("norm_eps", 1e-5),
            AddAttention = file.Bool("add_attention", true),
        };

        // mid_block_type: absent means the default UNetMidBlock2D; an explicit null means none.
        options.MiddleBlockEnabled = !file.IsNull("mid_block_type");
        file.Choice("mid_block_type", DiffusersUNetOptions.MiddleBlock, DiffusersUNetOptions.MiddleBlock);
        CheckBlocks(file, "down_block_types", options.DownBlockTypes, DiffusersUNetOptions.DownBlock, DiffusersUNetOptions.AttentionDownBlock);
        CheckBlocks(file, "up_block_types", options.UpBlockTypes, DiffusersUNetOptions.UpBlock, DiffusersUNetOptions.AttentionUpBlock);
        if (options.BlockOutChannels.Count != options.DownBlockTypes.Count || options.UpBlockTypes.Count != options.DownBlockTypes.Count)
        {
            throw file.Mismatch(
                "block_out_channels",
                Invariant($"{options.BlockOutChannels.Count} levels, but down_block_types names {options.DownBlockTypes.Count} blocks and up_block_types {options.UpBlockTypes.Count}: they must agree."));
        }

        RefuseUnread(file);
        try
        {
            options.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new InvalidDataException($"'{file.Path}' describes a UNet2DModel the importer cannot build: {FirstLine(ex)}", ex);
        }

        return (options, sampleSize);
    }

    /// <summary>Reads a scheduler config (<c>scheduler_config.json</c>).</summary>
    /// <param name="file">The file.</param>
    /// <returns>The settings.</returns>
    /// <exception cref="InvalidDataException">A key is malformed or not supported (the message names the file and key).</exception>
    public static DiffusersSchedulerSettings ReadScheduler(DiffusersConfigFile file)
    {
        string className = file.String("_class_name", null)
            ?? throw new InvalidDataException($"'{file.Path}' has no _class_name: not a diffusers scheduler config.");
        bool ddpm = className == "DDPMScheduler", ddim = className == "DDIMScheduler";
        file.Ignore("_diffusers_version", "_name_or_path", "_use_default_values", "tensor_format", "timestep_values");

        int timesteps = file.Int("num_train_timesteps", 1000)!.Value;
        if (timesteps is < 2 or > GaussianDiffusionOptions.MaxTimesteps)
        {
            throw file.Unsupported("num_train_timesteps", timesteps.ToString(CultureInfo.InvariantCulture), Invariant($"2 to {GaussianDiffusionOptions.MaxTimesteps}"));
        }

        var (family, betas) = Betas(file, timesteps);
        var objective = file.Choice("prediction_type", "epsilon", "epsilon", "sample", "v_prediction") switch
        {
            "epsilon" => PredictionTarget.Noise,
            "sample" => PredictionTarget.Start,
            _ => PredictionTarget.Velocity,
        };
        if (file.Bool("thresholding", false))
        {
            throw file.Unsupported("thresholding", "true", "false (dynamic thresholding is not implemented; clip_sample clamps x̂₀ to [−1, 1])");
        }

        file.Ignore("dynamic_thresholding_ratio", "sample_max_value");
        bool clip = file.Bool("clip_sample", true);
        double clipRange = file.Double("clip_sample_range", 1.0);
        if (clip && clipRange != 1.0)
        {
            throw file.Unsupported("clip_sample_range", clipRange.ToString(CultureInfo.InvariantCulture), "1.0 (x̂₀ is clamped to [−1, 1])");
        }

        if (file.Bool("rescale_betas_zero_snr", false))
        {
            throw file.Unsupported("rescale_betas_zero_snr", "true", "false (a zero terminal SNR makes β_T = 1, outside our schedules' (0, 1))");
        }

        VarianceType? variance = null;
        DiffusionScheduler scheduler;
        if (ddpm)
        {
            variance = file.Choice("variance_type", "fixed_small", "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned_range") switch
            {
                "fixed_small" or "fixed_small_log" => VarianceType.FixedSmall,
                "fixed_large" or "fixed_large_log" => VarianceType.FixedLarge,
                _ => VarianceType.LearnedRange,
            };

            // DDPMPipeline visits all T steps; the spacing and offset only matter for fewer.
            file.Ignore("timestep_spacing", "steps_offset");
            scheduler = new DdpmScheduler();
        }
        else
        {
            var spacing = file.Choice("timestep_spacing", "leading", "leading", "trailing", "linspace") switch
            {
                "leading" => TimestepSpacing.Leading,
                "trailing" => TimestepSpacing.Trailing,
                _ => TimestepSpacing.Uniform,
            };
            int offset = file.Int("steps_offset", 0)!.Value;
            if (offset < 0 || offset >= timesteps)
            {
                throw file.Unsupported("steps_offset", offset.ToString(CultureInfo.InvariantCulture), "0 to num_train_timesteps − 1");
            }

            // set_alpha_to_one = false makes diffusers' last DDIM step land on ᾱ₀ rather than on x̂₀; ours always ends on x̂₀.
            file.Ignore("set_alpha_to_one");
            scheduler = new DdimScheduler { Steps = Math.Min(50, timesteps), Spacing = spacing, StepsOffset = spacing == TimestepSpacing.Leading ? offset : 0 };
        }

        if (ddpm || ddim)
        {
            RefuseUnread(file);
        }

        return new DiffusersSchedulerSettings(className, family, betas, objective, variance, clip, scheduler);
    }

    /// <summary>The β values as diffusers' schedulers compute them (in float32, as they do).</summary>
    private static (BetaSchedule Family, double[] Betas) Betas(DiffusersConfigFile file, int timesteps)
    {
        var trained = file.Doubles("trained_betas", null);
        string kind = file.Choice("beta_schedule", "linear", "linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid");
        double start = file.Double("beta_start", 0.0001), end = file.Double("beta_end", 0.02);
        if (trained is not null)
        {
            if (trained.Length != timesteps)
            {
                throw file.Mismatch("trained_betas", Invariant($"{trained.Length} values, but num_train_timesteps is {timesteps}: they must agree."));
            }

            return (BetaSchedule.Custom, CheckedBetas(file, "trained_betas", trained.Select(Single)));
        }

        double Linspace(double from, double to, int i) => timesteps == 1 ? from : from + ((to - from) * i / (timesteps - 1));
        return kind switch
        {
            "linear" => (BetaSchedule.Linear, CheckedBetas(file, "beta_start", Enumerable.Range(0, timesteps).Select(i => Single(Linspace(start, end, i))))),
            "scaled_linear" => (BetaSchedule.Custom, CheckedBetas(file, "beta_start", Enumerable.Range(0, timesteps).Select(i => Single(Math.Pow(Single(Linspace(Math.Sqrt(start), Math.Sqrt(end), i)), 2))))),
            "sigmoid" => (BetaSchedule.Custom, CheckedBetas(file, "beta_start", Enumerable.Range(0, timesteps).Select(i => Single((Logistic(Single(Linspace(-6, 6, i))) * (end - start)) + start)))),
            _ => (BetaSchedule.Cosine, CheckedBetas(file, "beta_schedule", Enumerable.Range(0, timesteps).Select(i => Single(Math.Min(1 - (AlphaBar((i + 1.0) / timesteps) / AlphaBar((double)i / timesteps)), 0.999))))),
        };
    }

    // diffusers' squaredcos_cap_v2 (Nichol & Dhariwal 2021, eq. 17, s = 0.008).
    private static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);

    private static double Logistic(double x) => 1 / (1 + Math.Exp(-x));

    private static double Single(double value) => (float)value;

    private static double[] CheckedBetas(DiffusersConfigFile file, string key, IEnumerable<double> values)
    {
        var betas = values.ToArray();
        int bad = Array.FindIndex(betas, b => !(b > 0 && b < 1));
        return bad < 0 ? betas : throw file.Mismatch(key, Invariant($"β_{bad + 1} = {betas[bad]} is outside (0, 1): not a diffusion schedule."));
    }

    private static void CheckBlocks(DiffusersConfigFile file, string key, IReadOnlyList<string> types, string plain, string attention)
    {
        foreach (var type in types)
        {
            if (type != plain && type != attention)
            {
                throw file.Unsupported(key, $"\"{type}\"", $"\"{plain}\", \"{attention}\"");
            }
        }
    }

    private static void RefuseUnread(DiffusersConfigFile file)
    {
        var unread = file.UnreadKeys();
        if (unread.Count > 0)
        {
            throw new InvalidDataException($"'{file.Path}': key {unread[0]} is not understood by the diffusers importer{(unread.Count > 1 ? $" (nor {string.Join(", ", unread.Skip(1))})" : string.Empty)}; it is refused rather than ignored.");
        }
    }

    private static string FirstLine(Exception ex) => ex.Message.Split(" (Parameter", 2)[0];

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);
}
