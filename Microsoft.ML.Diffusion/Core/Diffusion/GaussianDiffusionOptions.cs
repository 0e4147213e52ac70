using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Schedules;

namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>
/// The one description of a diffusion model: the image size, the β schedule, what the network predicts, the loss, the
/// reverse-process variance and the network (<see cref="DenoiserOptions"/>). It checks itself (<see cref="Validate"/>) and
/// builds the <see cref="GaussianDiffusion"/> (<see cref="CreateDiffusion"/>); the ML.NET trainer's options, the model
/// file and the PyTorch importer all hold one, and a built diffusion exposes its own (<see cref="GaussianDiffusion.Options"/>).
/// </summary>
/// <remarks>
/// <para>The schedule is either computed — <see cref="Schedule"/> and <see cref="Timesteps"/> — or given exactly by
/// <see cref="Betas"/>, which then take precedence (T is their count) and <see cref="Schedule"/> names the family they
/// come from (<see cref="BetaSchedule.Custom"/> for your own). A built diffusion's description, and so every model file,
/// always records the exact β values, so that a model never depends on recomputing them.</para>
/// <para>As JSON (the model file's configuration) it is a flat object: ImageHeight, ImageWidth, Schedule, Betas, Objective,
/// Loss, Variance, MinSnrGamma and Network; Timesteps is written only when there are no Betas, HybridLambda only when it
/// is not the default.</para>
/// </remarks>
public sealed class GaussianDiffusionOptions
{
    /// <summary>The largest image side in pixels.</summary>
    public const int MaxImageSide = 8192;

    /// <summary>The largest number of diffusion timesteps T.</summary>
    public const int MaxTimesteps = 100_000;

    /// <summary>Gets or sets the image height in pixels. Default 32.</summary>
    public int ImageHeight { get; set; } = Defaults.ImageSize;

    /// <summary>Gets or sets the image width in pixels. Default 32.</summary>
    public int ImageWidth { get; set; } = Defaults.ImageSize;

    /// <summary>
    /// Gets or sets the β schedule family. With <see cref="Betas"/> set it names the family they come from; with
    /// <see cref="BetaSchedule.Custom"/>, <see cref="Betas"/> are required. Default <see cref="BetaSchedule.Linear"/>.
    /// </summary>
    public BetaSchedule Schedule { get; set; } = BetaSchedule.Linear;

    /// <summary>Gets or sets T, the number of diffusion steps, when the schedule is computed (without <see cref="Betas"/>). Default 1000.</summary>
    [JsonIgnore]
    public int Timesteps { get; set; } = Defaults.Timesteps;

    /// <summary>
    /// Gets or sets the exact β values β₁…β_T, or null to compute them from <see cref="Schedule"/> and <see cref="Timesteps"/>.
    /// When set they are the schedule (T is their count). Required with <see cref="BetaSchedule.Custom"/>.
    /// </summary>
    public IReadOnlyList<double>? Betas { get; set; }

    /// <summary>Gets or sets what the network predicts. Default <see cref="PredictionTarget.Noise"/>.</summary>
    public PredictionTarget Objective { get; set; } = PredictionTarget.Noise;

    /// <summary>Gets or sets the distance of the simple loss. Default <see cref="DiffusionLoss.MeanSquaredError"/>.</summary>
    public DiffusionLoss Loss { get; set; } = DiffusionLoss.MeanSquaredError;

    /// <summary>
    /// Gets or sets the reverse-process variance; <see cref="VarianceType.LearnedRange"/> needs a network with
    /// <see cref="DenoiserOptions.LearnedVariance"/> and trains with the hybrid loss. Default <see cref="VarianceType.FixedSmall"/>.
    /// </summary>
    public VarianceType Variance { get; set; } = VarianceType.FixedSmall;

    /// <summary>Gets or sets γ of min-SNR-γ loss weighting (Hang et al. 2023), or null for uniform weights.</summary>
    public double? MinSnrGamma { get; set; }

    /// <summary>Gets or sets λ of the hybrid loss L_simple + λ·L_vlb used with learned variance. Default 0.001.</summary>
    [JsonIgnore]
    public double HybridLambda { get; set; } = Defaults.HybridLambda;

    /// <summary>Gets or sets the network's kind and shape. Default a <see cref="UNetOptions"/> with its defaults.</summary>
    public DenoiserOptions Network { get; set; } = new UNetOptions();

    // T in JSON only when the schedule is computed: model files always hold their exact β values and never write it.
    [JsonInclude]
    [JsonPropertyName(nameof(Timesteps))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    private int? StoredTimesteps
    {
        get => Betas is null ? Timesteps : null;
        set => Timesteps = value ?? Defaults.Timesteps;
    }

    // λ in JSON only when it is not the default (no model file written before it existed has it).
    [JsonInclude]
    [JsonPropertyName(nameof(HybridLambda))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    private double? StoredHybridLambda
    {
        get => HybridLambda == Defaults.HybridLambda ? null : HybridLambda;
        set => HybridLambda = value ?? Defaults.HybridLambda;
    }

    /// <summary>Creates the noise schedule: the exact <see cref="Betas"/> when set, else <see cref="Schedule"/> with <see cref="Timesteps"/> steps.</summary>
    /// <returns>The schedule.</returns>
    public NoiseSchedule CreateSchedule()
    {
        if (Betas is not null)
        {
            return NoiseSchedule.Restore(Schedule, Betas);
        }

        return Schedule == BetaSchedule.Custom
            ? throw new ArgumentException("A custom schedule needs its β values: set Betas.", nameof(Betas))
            : NoiseSchedule.Create(Schedule, Timesteps);
    }

    /// <summary>Builds the diffusion this describes, with a fresh network (weights from torch's global generator), on the CPU.</summary>
    /// <returns>The diffusion; it owns its network.</returns>
    /// <exception cref="ArgumentException">The description is invalid (see <see cref="Validate"/>).</exception>
    public GaussianDiffusion CreateDiffusion() => new(this);

    /// <summary>Returns a deep copy (its own network options and β values).</summary>
    /// <returns>The copy.</returns>
    public GaussianDiffusionOptions Clone()
    {
        var copy = (GaussianDiffusionOptions)MemberwiseClone();
        copy.Network = Network?.Clone()!;
        copy.Betas = Betas?.ToArray();
        return copy;
    }

    /// <summary>
    /// Throws a clear exception for an invalid description: the network's own limits (<see cref="DenoiserOptions.Validate"/>),
    /// image sides in [1, <see cref="MaxImageSide"/>] and divisible by the network's <see cref="DenoiserOptions.SizeDivisor"/>,
    /// T in [2, <see cref="MaxTimesteps"/>], every β in (0, 1), the variance type agreeing with the network's learned-variance
    /// output, and γ and λ positive and finite.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    /// <exception cref="ArgumentException">The parts disagree.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Schedule) || !Enum.IsDefined(Objective) || !Enum.IsDefined(Loss) || !Enum.IsDefined(Variance))
        {
            throw new ArgumentOutOfRangeException(nameof(Schedule), "An unknown schedule, objective, loss or variance.");
        }

        if (Betas is not null)
        {
            Check(Betas.Count is >= 2 and <= MaxTimesteps, nameof(Betas), $"The schedule has {Betas.Count} timesteps (β values); T must be in [2, {MaxTimesteps}].");
            NoiseSchedule.CheckBetas(Betas);
        }
        else
        {
            Check(Schedule != BetaSchedule.Custom, nameof(Betas), $"A custom schedule needs its β values: set Betas (their count is T).");
            Check(Timesteps is >= 2 and <= MaxTimesteps, nameof(Timesteps), $"The schedule has {Timesteps} timesteps; T must be in [2, {MaxTimesteps}].");
        }

        Check(MinSnrGamma is null || (double.IsFinite(MinSnrGamma.Value) && MinSnrGamma > 0), nameof(MinSnrGamma), $"MinSnrGamma {MinSnrGamma} must be positive and finite.");
        Check(double.IsFinite(HybridLambda) && HybridLambda >= 0, nameof(HybridLambda), $"HybridLambda {HybridLambda} must be finite and not negative.");
        Check(ImageHeight is >= 1 and <= MaxImageSide && ImageWidth is >= 1 and <= MaxImageSide, nameof(ImageHeight), $"The image size {ImageHeight}×{ImageWidth} is out of range: each side must be in [1, {MaxImageSide}].");
        if (Network is null)
        {
            throw new ArgumentNullException(nameof(Network), "The network settings are missing.");
        }

        Network.Validate();
        int divisor = Network.SizeDivisor;
        Check(
            ImageHeight % divisor == 0 && ImageWidth % divisor == 0,
            nameof(ImageHeight),
            $"The image size {ImageHeight}×{ImageWidth} is not divisible by {divisor}: each side must be divisible by {divisor}, {Network.DescribeSizeDivisor()}.");
        if ((Variance == VarianceType.LearnedRange) != Network.LearnedVariance)
        {
            throw new ArgumentException(
                Invariant($"Variance {Variance} needs a network with LearnedVariance = {Variance == VarianceType.LearnedRange}: the network's learned-variance output must agree with the variance type."),
                nameof(Variance));
        }
    }

    private static void Check(bool condition, string name, FormattableString message)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, Invariant(message));
        }
    }

    private static string Invariant(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);

    /// <summary>The defaults of a new description.</summary>
    public static class Defaults
    {
        /// <summary>The image side: 32.</summary>
        public const int ImageSize = 32;

        /// <summary>T: 1000.</summary>
        public const int Timesteps = 1000;

        /// <summary>λ of the hybrid loss: 0.001 (Nichol &amp; Dhariwal 2021).</summary>
        public const double HybridLambda = 0.001;
    }
}
