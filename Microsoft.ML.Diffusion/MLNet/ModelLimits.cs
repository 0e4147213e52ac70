using System;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Checks a configuration read from a file before anything is allocated from it. A damaged or hostile file must fail with
/// a clear <see cref="InvalidDataException"/>, never with a multi-gigabyte allocation, an overflow or a sampler that runs for
/// hours. The model's own rules and limits — image size, T, β values, variance, and each network kind's widths and depths —
/// are the description's (<see cref="GaussianDiffusionOptions.Validate"/>, which asks the network's
/// <see cref="DenoiserOptions.Validate"/>); what is checked here belongs to the file: its sections, columns, class names,
/// trained steps, sampler settings and the size of its weights' entry.
/// </summary>
internal static class ModelLimits
{
    /// <summary>The largest number of diffusion timesteps T, and of sampling steps (the description's limit).</summary>
    public const int MaxTimesteps = GaussianDiffusionOptions.MaxTimesteps;

    /// <summary>The largest network micro-batch a saved sampler may ask for.</summary>
    public const int MaxMicroBatch = 4096;

    /// <summary>The largest number of parameters (their float32 weights must fit one 2 GiB entry).</summary>
    public const long MaxParameters = int.MaxValue / 4;

    /// <summary>
    /// Checks every field of a configuration read from <paramref name="source"/>; throws an <see cref="InvalidDataException"/>
    /// naming the source and the field.
    /// </summary>
    public static void Check(DiffusionModelConfig config, string source)
    {
        void Require(bool ok, string what)
        {
            if (!ok)
            {
                throw new InvalidDataException($"{source} has an impossible diffusion model configuration: {what}.");
            }
        }

        static string S(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

        var diffusion = config.Diffusion;
        Require(diffusion is not null && config.Sampling is not null, "a section is missing");
        Require(diffusion!.Betas is not null, "the β values are missing (a model file records them exactly)");
        try
        {
            diffusion.Validate();
        }
        catch (ArgumentException ex)
        {
            Require(false, ex.Message.TrimEnd('.'));
        }

        var network = diffusion.Network;
        Require(config.ClassNames is null || (config.ClassNames.Count <= DenoiserOptions.MaxClassCount && config.ClassNames.All(n => n is not null)), "the class names");
        Require(!string.IsNullOrEmpty(config.ImageColumnName), "no image column name");
        Require(config.TrainedSteps >= 0, S($"{config.TrainedSteps} trained steps"));
        var sampling = config.Sampling!;
        Require(sampling.MicroBatchSize is null or (>= 1 and <= MaxMicroBatch), S($"a sampling micro-batch of {sampling.MicroBatchSize} (must be in [1, {MaxMicroBatch}])"));
        Require(sampling.Scheduler is not null, "no scheduler");
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException ex)
        {
            Require(false, "sampling settings: " + ex.Message);
        }

        long parameters = network.CountParameters() ?? 0;
        Require(parameters <= MaxParameters, S($"a {network.Kind} of {parameters:N0} parameters (at most {MaxParameters:N0})"));
    }
}
