using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Sampling;
using Microsoft.ML.Diffusion.Core.Schedules;

namespace Microsoft.ML.Diffusion.Import;

/// <summary>Which of openai's code bases wrote a checkpoint: their defaults and flags differ.</summary>
public enum ImprovedDiffusionCodebase
{
    /// <summary>openai/improved-diffusion (Nichol &amp; Dhariwal 2021): timesteps rescaled by default, <c>--sigma_small</c>.</summary>
    ImprovedDiffusion,

    /// <summary>
    /// openai/guided-diffusion (Dhariwal &amp; Nichol 2021): <c>--num_head_channels</c>, <c>--channel_mult</c>,
    /// <c>--resblock_updown</c>, <c>--use_new_attention_order</c>, <c>--use_fp16</c>; timesteps not rescaled by default.
    /// </summary>
    GuidedDiffusion,
}

/// <summary>
/// What <see cref="ImprovedDiffusionCheckpoint.Import(MLContext, string, ImprovedDiffusionImportOptions)"/> cannot read
/// from an improved-diffusion or guided-diffusion checkpoint (a bare state dict): the flags their scripts were run with.
/// Each property is one of their flags, with their default; <see cref="Parse"/> reads the flag string their README gives
/// for each published checkpoint.
/// </summary>
/// <remarks>
/// <para>The model flags build the network (<see cref="ImprovedDiffusionUNetOptions"/>); the diffusion flags the schedule
/// (their β values exactly: linear scaled by 1000/T, or cosine), the objective (ε, or x₀ with <c>--predict_xstart</c>),
/// the variance (learned range with <c>--learn_sigma</c>, else β̃ with <c>--sigma_small</c>, else β) and, with
/// <c>--timestep_respacing</c>, their respaced diffusion (its β values, and the original timesteps the network sees); the
/// sampling flags the sampler (<c>--use_ddim</c>: DDIM with η = 0 over every step of the model, else ancestral sampling;
/// <c>--clip_denoised</c>).</para>
/// <para>Training and script flags that do not change the model are accepted and ignored (see <see cref="IgnoredFlags"/>);
/// flags of models this importer does not build (super-resolution, classifiers) are refused by name.</para>
/// </remarks>
public sealed class ImprovedDiffusionImportOptions
{
    /// <summary>Flags that are accepted and change nothing here: training settings, script settings, and the precision.</summary>
    public static readonly IReadOnlyCollection<string> IgnoredFlags = new[]
    {
        "use_checkpoint", "use_kl", "rescale_learned_sigmas", "use_fp16", "fp16_scale_growth", "lr", "weight_decay",
        "lr_anneal_steps", "batch_size", "microbatch", "ema_rate", "log_interval", "save_interval", "resume_checkpoint",
        "schedule_sampler", "data_dir", "num_samples", "model_path",
    };

    /// <summary>Flags of models this importer does not build, refused by name: super-resolution models and classifiers.</summary>
    public static readonly IReadOnlyCollection<string> RefusedFlags = new[]
    {
        "large_size", "small_size", "base_samples", "classifier_path", "classifier_scale", "classifier_use_fp16",
        "classifier_width", "classifier_depth", "classifier_attention_resolutions", "classifier_use_scale_shift_norm",
        "classifier_resblock_updown", "classifier_pool",
    };

    private static readonly string[] GuidedOnlyFlags = { "num_head_channels", "channel_mult", "resblock_updown", "use_fp16", "use_new_attention_order" };
    private static readonly string[] ImprovedOnlyFlags = { "sigma_small" };

    /// <summary>Initializes a new instance of the <see cref="ImprovedDiffusionImportOptions"/> class with a code base's defaults.</summary>
    /// <param name="codebase">The code base whose defaults apply.</param>
    public ImprovedDiffusionImportOptions(ImprovedDiffusionCodebase codebase = ImprovedDiffusionCodebase.ImprovedDiffusion)
    {
        if (!Enum.IsDefined(codebase))
        {
            throw new ArgumentOutOfRangeException(nameof(codebase), codebase, "Unknown code base.");
        }

        Codebase = codebase;
        RescaleTimesteps = codebase == ImprovedDiffusionCodebase.ImprovedDiffusion;
    }

    /// <summary>Gets the code base whose flags and defaults these are.</summary>
    public ImprovedDiffusionCodebase Codebase { get; }

    /// <summary>Gets or sets <c>--image_size</c> (it also chooses <c>channel_mult</c> when that is empty). Default 64.</summary>
    public int ImageSize { get; set; } = 64;

    /// <summary>Gets or sets <c>--num_channels</c>, the base width. Default 128.</summary>
    public int NumChannels { get; set; } = 128;

    /// <summary>Gets or sets <c>--num_res_blocks</c>. Default 2.</summary>
    public int NumResBlocks { get; set; } = 2;

    /// <summary>Gets or sets <c>--num_heads</c>. Default 4.</summary>
    public int NumHeads { get; set; } = 4;

    /// <summary>Gets or sets <c>--num_heads_upsample</c> (−1: as <see cref="NumHeads"/>). Default −1.</summary>
    public int NumHeadsUpsample { get; set; } = -1;

    /// <summary>Gets or sets <c>--num_head_channels</c> (guided-diffusion; −1: use <see cref="NumHeads"/>). Default −1.</summary>
    public int NumHeadChannels { get; set; } = -1;

    /// <summary>Gets or sets <c>--attention_resolutions</c>: the resolutions (in pixels) that attend, comma-separated. Default "16,8".</summary>
    public string AttentionResolutions { get; set; } = "16,8";

    /// <summary>
    /// Gets or sets <c>--channel_mult</c> (a guided-diffusion flag): comma-separated integer multipliers, or empty to choose
    /// them by image size as their scripts do. improved-diffusion's script has no such flag, but its <c>UNetModel</c> takes
    /// them: set this property for a network built with other multipliers. Default empty.
    /// </summary>
    public string ChannelMult { get; set; } = string.Empty;

    /// <summary>Gets or sets <c>--dropout</c>. Default 0.</summary>
    public double Dropout { get; set; }

    /// <summary>Gets or sets <c>--learn_sigma</c>: the network also outputs the variance interpolation. Default false.</summary>
    public bool LearnSigma { get; set; }

    /// <summary>Gets or sets <c>--sigma_small</c> (improved-diffusion): without learned sigmas, the variance is β̃ rather than β. Default false.</summary>
    public bool SigmaSmall { get; set; }

    /// <summary>Gets or sets <c>--class_cond</c>: the network takes a label in [0, <see cref="NumClasses"/>). Default false.</summary>
    public bool ClassCond { get; set; }

    /// <summary>Gets or sets the number of classes of a class-conditional network (their scripts' <c>NUM_CLASSES</c>, not a flag). Default 1000.</summary>
    public int NumClasses { get; set; } = 1000;

    /// <summary>Gets or sets <c>--use_scale_shift_norm</c>. Default true.</summary>
    public bool UseScaleShiftNorm { get; set; } = true;

    /// <summary>Gets or sets <c>--resblock_updown</c> (guided-diffusion). Default false.</summary>
    public bool ResblockUpdown { get; set; }

    /// <summary>Gets or sets <c>--use_new_attention_order</c> (guided-diffusion). Default false.</summary>
    public bool UseNewAttentionOrder { get; set; }

    /// <summary>Gets or sets <c>--diffusion_steps</c>, T. Default 1000.</summary>
    public int DiffusionSteps { get; set; } = 1000;

    /// <summary>Gets or sets <c>--noise_schedule</c>: "linear" (β from 0.0001 to 0.02, scaled by 1000/T) or "cosine". Default "linear".</summary>
    public string NoiseSchedule { get; set; } = "linear";

    /// <summary>
    /// Gets or sets <c>--timestep_respacing</c>: empty (all T steps), section counts ("250", "10,15,20") or "ddimN". The
    /// imported model is then their respaced diffusion, with as many steps as are kept. Default empty.
    /// </summary>
    public string TimestepRespacing { get; set; } = string.Empty;

    /// <summary>Gets or sets <c>--predict_xstart</c>: the network predicts x₀ rather than ε. Default false.</summary>
    public bool PredictXStart { get; set; }

    /// <summary>Gets or sets <c>--rescale_timesteps</c>: the network sees t·1000/T. Default true for improved-diffusion, false for guided-diffusion.</summary>
    public bool RescaleTimesteps { get; set; }

    /// <summary>Gets or sets <c>--use_ddim</c>: sample with DDIM (η = 0) over every step of the model, else ancestrally. Default false.</summary>
    public bool UseDdim { get; set; }

    /// <summary>Gets or sets <c>--clip_denoised</c>: clamp x̂₀ to [−1, 1] at every step. Default true.</summary>
    public bool ClipDenoised { get; set; } = true;

    /// <summary>Gets or sets the sampling settings of the imported sampler; null takes them from <see cref="UseDdim"/> and <see cref="ClipDenoised"/>.</summary>
    public DiffusionSamplerOptions? Sampling { get; set; }

    /// <summary>
    /// Reads the flags their scripts take, as their READMEs give them (<c>--image_size 64 --num_channels 128 --learn_sigma
    /// True …</c>; <c>--name=value</c> also works); flags not given keep the code base's defaults.
    /// </summary>
    /// <param name="flags">The flags.</param>
    /// <param name="codebase">The code base that wrote the checkpoint.</param>
    /// <returns>The options.</returns>
    /// <exception cref="ArgumentException">A flag is unknown, refused, given twice, lacks a value or has an invalid one (the message names it).</exception>
    public static ImprovedDiffusionImportOptions Parse(string flags, ImprovedDiffusionCodebase codebase = ImprovedDiffusionCodebase.ImprovedDiffusion)
    {
        ArgumentNullException.ThrowIfNull(flags);
        var options = new ImprovedDiffusionImportOptions(codebase);
        var words = flags.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < words.Length; i++)
        {
            string word = words[i];
            if (!word.StartsWith("--", StringComparison.Ordinal) || word.Length == 2)
            {
                throw new ArgumentException($"Expected a flag (--name value) but found '{word}' in the flags.", nameof(flags));
            }

            string name = word[2..];
            string? value = null;
            int equals = name.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                value = name[(equals + 1)..];
                name = name[..equals];
            }
            else if (i + 1 < words.Length && !words[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                value = words[++i];
            }

            if (!seen.Add(name))
            {
                throw new ArgumentException($"The flag --{name} is given twice.", nameof(flags));
            }

            if (value is null)
            {
                throw new ArgumentException($"The flag --{name} has no value.", nameof(flags));
            }

            // A shell would remove quotes ("--timestep_respacing \"\"" is an empty value); so does this.
            options.Set(name, value.Trim('"', '\''));
        }

        return options;
    }

    /// <summary>Throws a clear exception for flags that cannot describe a model.</summary>
    /// <exception cref="ArgumentException">The flags describe no valid model (the message names the flag).</exception>
    public void Validate()
    {
        DescribeModel().Validate();
        Sampling?.Validate();
    }

    /// <summary>
    /// The model these flags describe: the network's shape, the image size, the exact β values (respaced when asked),
    /// the objective and the variance — their <c>create_model_and_diffusion</c>.
    /// </summary>
    /// <returns>The description (validated by the caller).</returns>
    /// <exception cref="ArgumentException">A flag's value is invalid (the message names it).</exception>
    public GaussianDiffusionOptions DescribeModel()
    {
        Require(ImageSize is >= 1 and <= GaussianDiffusionOptions.MaxImageSide, "image_size", ImageSize, $"must be in [1, {GaussianDiffusionOptions.MaxImageSide}]");
        Require(DiffusionSteps is >= 2 and <= GaussianDiffusionOptions.MaxTimesteps, "diffusion_steps", DiffusionSteps, $"must be in [2, {GaussianDiffusionOptions.MaxTimesteps}]");
        Require(NumClasses is >= 1 and <= DenoiserOptions.MaxClassCount, nameof(NumClasses), NumClasses, $"must be in [1, {DenoiserOptions.MaxClassCount}]");
        var betas = NamedBetas(NoiseSchedule, DiffusionSteps);
        var kept = SpaceTimesteps(DiffusionSteps, TimestepRespacing);
        bool respaced = kept.Length != DiffusionSteps;
        var network = new ImprovedDiffusionUNetOptions
        {
            Channels = 3,
            LearnedVariance = LearnSigma,
            ClassCount = ClassCond ? NumClasses : 0,
            ModelChannels = NumChannels,
            ResBlocks = NumResBlocks,
            ChannelMult = Multipliers(),
            AttentionDownsampleRates = AttentionRates(),
            Heads = NumHeads,
            HeadChannels = NumHeadChannels == -1 ? null : NumHeadChannels,
            UpsampleHeads = NumHeadsUpsample == -1 ? null : NumHeadsUpsample,
            Dropout = Dropout,
            ScaleShiftNorm = UseScaleShiftNorm,
            ResBlockUpDown = ResblockUpdown,
            NewAttentionOrder = UseNewAttentionOrder,
            TimestepScale = RescaleTimesteps ? 1000.0 / DiffusionSteps : 1,
            TimestepMap = respaced ? kept : null,
        };

        return new GaussianDiffusionOptions
        {
            ImageHeight = ImageSize,
            ImageWidth = ImageSize,
            Schedule = NoiseSchedule == "cosine" ? BetaSchedule.Cosine : BetaSchedule.Linear,
            Betas = Respace(betas, kept), // their create_gaussian_diffusion always re-derives β through SpacedDiffusion
            Objective = PredictXStart ? PredictionTarget.Start : PredictionTarget.Noise,
            Variance = LearnSigma ? VarianceType.LearnedRange : SigmaSmall ? VarianceType.FixedSmall : VarianceType.FixedLarge,
            Network = network,
        };
    }

    /// <summary>The sampling settings: <see cref="Sampling"/>, or DDIM (η = 0, every step) / DDPM with <see cref="ClipDenoised"/>.</summary>
    /// <param name="steps">The number of steps of the imported (possibly respaced) model.</param>
    /// <returns>The settings.</returns>
    internal DiffusionSamplerOptions SamplerOptions(int steps) => Sampling?.Clone() ?? new DiffusionSamplerOptions
    {
        Scheduler = UseDdim ? new DdimScheduler { Steps = steps, Eta = 0 } : new DdpmScheduler(),
        ClipDenoised = ClipDenoised,
    };

    /// <summary>Describes the flags for messages: the ones that shape the network.</summary>
    internal string DescribeNetworkFlags() => Invariant(
        $"--image_size {ImageSize} --num_channels {NumChannels} --num_res_blocks {NumResBlocks} --attention_resolutions {AttentionResolutions} --learn_sigma {LearnSigma} --class_cond {ClassCond} --use_scale_shift_norm {UseScaleShiftNorm}")
        + (Codebase == ImprovedDiffusionCodebase.GuidedDiffusion
            ? Invariant($" --channel_mult \"{ChannelMult}\" --resblock_updown {ResblockUpdown} --num_head_channels {NumHeadChannels}")
            : string.Empty);

    /// <summary>Their <c>get_named_beta_schedule</c>: linear from 0.0001·s to 0.02·s with s = 1000/T (as numpy's linspace), or cosine with β ≤ 0.999.</summary>
    internal static double[] NamedBetas(string schedule, int steps)
    {
        var betas = new double[steps];
        switch (schedule)
        {
            case "linear":
                double scale = 1000.0 / steps, start = scale * 0.0001, end = scale * 0.02;
                double step = (end - start) / (steps - 1);
                for (int i = 0; i < steps; i++)
                {
                    betas[i] = (i * step) + start;
                }

                betas[^1] = end;
                return betas;
            case "cosine":
                static double AlphaBar(double t)
                {
                    double c = Math.Cos((t + 0.008) / 1.008 * Math.PI / 2);
                    return c * c;
                }

                for (int i = 0; i < steps; i++)
                {
                    double t1 = (double)i / steps, t2 = (double)(i + 1) / steps;
                    betas[i] = Math.Min(1 - (AlphaBar(t2) / AlphaBar(t1)), 0.999);
                }

                return betas;
            default:
                throw new ArgumentException($"--noise_schedule '{schedule}' is not supported: their code knows 'linear' and 'cosine'.", nameof(NoiseSchedule));
        }
    }

    /// <summary>
    /// Their <c>space_timesteps</c>: the original timesteps kept, ascending. "ddimN" takes every k-th step for the integer
    /// stride k that gives exactly N steps; "a,b,c" splits the T steps into equal sections and takes a, b, c evenly spaced
    /// steps (rounded half to even, as Python's round) from them; empty keeps all.
    /// </summary>
    internal static int[] SpaceTimesteps(int steps, string respacing)
    {
        respacing = respacing?.Trim() ?? string.Empty;
        if (respacing.Length == 0)
        {
            return Enumerable.Range(0, steps).ToArray();
        }

        if (respacing.StartsWith("ddim", StringComparison.Ordinal))
        {
            int desired = ParseInt("timestep_respacing", respacing[4..]);
            for (int stride = 1; stride < steps; stride++)
            {
                int count = (steps + stride - 1) / stride;
                if (count == desired)
                {
                    return Enumerable.Range(0, count).Select(i => i * stride).ToArray();
                }
            }

            throw new ArgumentException(Invariant($"--timestep_respacing {respacing}: {steps} steps cannot be cut into exactly {desired} with an integer stride."), nameof(TimestepRespacing));
        }

        var sections = respacing.Split(',').Select(s => ParseInt("timestep_respacing", s)).ToArray();
        int sizePer = steps / sections.Length, extra = steps % sections.Length, startIndex = 0;
        var kept = new SortedSet<int>();
        for (int i = 0; i < sections.Length; i++)
        {
            int size = sizePer + (i < extra ? 1 : 0);
            if (sections[i] < 1 || size < sections[i])
            {
                throw new ArgumentException(Invariant($"--timestep_respacing {respacing}: a section of {size} steps cannot give {sections[i]} steps."), nameof(TimestepRespacing));
            }

            double stride = sections[i] <= 1 ? 1 : (size - 1) / (double)(sections[i] - 1);
            double current = 0;
            for (int k = 0; k < sections[i]; k++)
            {
                kept.Add(startIndex + (int)Math.Round(current, MidpointRounding.ToEven));
                current += stride;
            }

            startIndex += size;
        }

        return kept.ToArray();
    }

    /// <summary>Their respaced β values: β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} over the kept timesteps (ᾱ the running product of 1 − β).</summary>
    internal static double[] Respace(double[] betas, int[] kept)
    {
        var keep = new HashSet<int>(kept);
        var result = new List<double>(kept.Length);
        double alphaBar = 1, last = 1;
        for (int i = 0; i < betas.Length; i++)
        {
            alphaBar *= 1 - betas[i];
            if (keep.Contains(i))
            {
                result.Add(1 - (alphaBar / last));
                last = alphaBar;
            }
        }

        return result.ToArray();
    }

    private double[] Multipliers()
    {
        if (!string.IsNullOrWhiteSpace(ChannelMult))
        {
            return ChannelMult.Split(',').Select(s => (double)ParseInt("channel_mult", s)).ToArray();
        }

        return (Codebase, ImageSize) switch
        {
            (ImprovedDiffusionCodebase.ImprovedDiffusion, 256) => new[] { 1.0, 1, 2, 2, 4, 4 },
            (ImprovedDiffusionCodebase.ImprovedDiffusion, 64) => new[] { 1.0, 2, 3, 4 },
            (ImprovedDiffusionCodebase.ImprovedDiffusion, 32) => new[] { 1.0, 2, 2, 2 },
            (ImprovedDiffusionCodebase.GuidedDiffusion, 512) => new[] { 0.5, 1, 1, 2, 2, 4, 4 },
            (ImprovedDiffusionCodebase.GuidedDiffusion, 256) => new[] { 1.0, 1, 2, 2, 4, 4 },
            (ImprovedDiffusionCodebase.GuidedDiffusion, 128) => new[] { 1.0, 1, 2, 3, 4 },
            (ImprovedDiffusionCodebase.GuidedDiffusion, 64) => new[] { 1.0, 2, 3, 4 },
            _ => throw new ArgumentException(
                Invariant($"--image_size {ImageSize} is not supported by {Codebase}'s create_model ({(Codebase == ImprovedDiffusionCodebase.ImprovedDiffusion ? "32, 64 or 256" : "64, 128, 256 or 512, or give --channel_mult")})."),
                nameof(ImageSize)),
        };
    }

    private int[] AttentionRates()
    {
        if (string.IsNullOrWhiteSpace(AttentionResolutions))
        {
            return Array.Empty<int>();
        }

        return AttentionResolutions.Split(',').Select(s =>
        {
            int resolution = ParseInt("attention_resolutions", s);
            Require(resolution >= 1, "attention_resolutions", resolution, "must hold positive resolutions");
            return ImageSize / resolution;
        }).ToArray();
    }

    private void Set(string name, string value)
    {
        if (RefusedFlags.Contains(name))
        {
            throw new ArgumentException(
                $"The flag --{name} is not supported: it belongs to a {(name.StartsWith("classifier", StringComparison.Ordinal) ? "classifier (classifier guidance)" : "super-resolution model")}, which this importer does not build.",
                nameof(name));
        }

        bool guided = Codebase == ImprovedDiffusionCodebase.GuidedDiffusion;
        if ((!guided && GuidedOnlyFlags.Contains(name)) || (guided && ImprovedOnlyFlags.Contains(name)))
        {
            throw new ArgumentException(
                $"The flag --{name} is not one of {Codebase}'s: {(guided ? "it is improved-diffusion's" : "it is guided-diffusion's; parse with ImprovedDiffusionCodebase.GuidedDiffusion")}.",
                nameof(name));
        }

        switch (name)
        {
            case "image_size": ImageSize = ParseInt(name, value); break;
            case "num_channels": NumChannels = ParseInt(name, value); break;
            case "num_res_blocks": NumResBlocks = ParseInt(name, value); break;
            case "num_heads": NumHeads = ParseInt(name, value); break;
            case "num_heads_upsample": NumHeadsUpsample = ParseInt(name, value); break;
            case "num_head_channels": NumHeadChannels = ParseInt(name, value); break;
            case "attention_resolutions": AttentionResolutions = value; break;
            case "channel_mult": ChannelMult = value; break;
            case "dropout": Dropout = ParseDouble(name, value); break;
            case "learn_sigma": LearnSigma = ParseBool(name, value); break;
            case "sigma_small": SigmaSmall = ParseBool(name, value); break;
            case "class_cond": ClassCond = ParseBool(name, value); break;
            case "use_scale_shift_norm": UseScaleShiftNorm = ParseBool(name, value); break;
            case "resblock_updown": ResblockUpdown = ParseBool(name, value); break;
            case "use_new_attention_order": UseNewAttentionOrder = ParseBool(name, value); break;
            case "diffusion_steps": DiffusionSteps = ParseInt(name, value); break;
            case "noise_schedule": NoiseSchedule = value; break;
            case "timestep_respacing": TimestepRespacing = value; break;
            case "predict_xstart": PredictXStart = ParseBool(name, value); break;
            case "rescale_timesteps": RescaleTimesteps = ParseBool(name, value); break;
            case "use_ddim": UseDdim = ParseBool(name, value); break;
            case "clip_denoised": ClipDenoised = ParseBool(name, value); break;
            default:
                if (!IgnoredFlags.Contains(name))
                {
                    throw new ArgumentException($"Unknown flag --{name}: it is not one of {Codebase}'s model, diffusion, sampling or training flags.", nameof(name));
                }

                // Check the value's type anyway, so that a typo is not silently accepted.
                if (name is "use_checkpoint" or "use_kl" or "rescale_learned_sigmas" or "use_fp16")
                {
                    ParseBool(name, value);
                }

                break;
        }
    }

    // Their str2bool.
    private static bool ParseBool(string name, string value) => value.ToLowerInvariant() switch
    {
        "yes" or "true" or "t" or "y" or "1" => true,
        "no" or "false" or "f" or "n" or "0" => false,
        _ => throw new ArgumentException($"The flag --{name} expects a boolean (True/False); got '{value}'.", nameof(name)),
    };

    private static int ParseInt(string name, string value) => int.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int result)
        ? result
        : throw new ArgumentException($"The flag --{name} expects an integer; got '{value}'.", nameof(name));

    private static double ParseDouble(string name, string value) => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double result) && double.IsFinite(result)
        ? result
        : throw new ArgumentException($"The flag --{name} expects a number; got '{value}'.", nameof(name));

    private static void Require(bool condition, string flag, object value, string rule)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(flag, value, Invariant($"--{flag} {value} {rule}."));
        }
    }

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);
}
