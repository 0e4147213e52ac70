using System;
using System.Text.Json.Nodes;
using Microsoft.ML.Diffusion.Core.Sampling;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// Reads the sampler settings of model files written before schedulers carried their own settings (formats 1 and 2):
/// their "Sampling" object has "Method" (the enum's name, "Ddpm", "Ddim", "DpmSolverPlusPlus" or "EulerAncestral", or its
/// number 0–3), "SamplerName" (a registered name that overrode "Method", or null), and one shared "Steps", "Eta" and
/// "Spacing". They become the "Scheduler" object those settings meant — the scheduler named, given the shared settings it
/// has (DDIM: steps and η; DPM-Solver++: steps and spacing; Euler-ancestral: steps, η and spacing; DDPM: none) — so that
/// the file generates the same bytes as before.
/// </summary>
/// <remarks>
/// One rule of the old options lives only here: Euler-ancestral read η = 0 (the shared default, DDIM's deterministic
/// choice) as η = 1. Today's <see cref="EulerAncestralScheduler.Eta"/> means what it says (default 1); an old file that
/// asked for Euler-ancestral with η = 0 asked for η = 1.
/// </remarks>
internal static class LegacySamplingSettings
{
    private const string SchedulerProperty = nameof(DiffusionSamplerOptions.Scheduler);
    private static readonly string[] Methods = { DdpmScheduler.RegisteredName, DdimScheduler.RegisteredName, DpmSolverScheduler.RegisteredName, EulerAncestralScheduler.RegisteredName };

    /// <summary>Rewrites an old "Sampling" object in place into today's form; a new one (with "Scheduler") is left alone.</summary>
    /// <param name="sampling">The "Sampling" object of a model file's configuration, or null.</param>
    public static void Upgrade(JsonNode? sampling)
    {
        if (sampling is not JsonObject settings || settings.ContainsKey(SchedulerProperty))
        {
            return;
        }

        string name = settings["SamplerName"] is JsonNode samplerName && samplerName.GetValue<string>() is string registered
            ? registered
            : MethodName(settings["Method"]);
        var scheduler = new JsonObject { ["Name"] = name };
        if (settings["Steps"] is JsonNode steps)
        {
            scheduler["Steps"] = steps.DeepClone();
        }

        double eta = settings["Eta"] is JsonNode etaNode ? etaNode.GetValue<double>() : 0;
        if (name.Equals(EulerAncestralScheduler.RegisteredName, StringComparison.OrdinalIgnoreCase) && eta == 0)
        {
            eta = 1;
        }

        scheduler["Eta"] = eta;
        if (settings["Spacing"] is JsonNode spacing)
        {
            scheduler["Spacing"] = spacing.DeepClone();
        }

        foreach (var old in new[] { "Method", "SamplerName", "Steps", "Eta", "Spacing" })
        {
            settings.Remove(old);
        }

        // Settings a scheduler does not have (DDPM's steps, DDIM's spacing…) are ignored as the old factories ignored them.
        settings[SchedulerProperty] = scheduler;
    }

    private static string MethodName(JsonNode? method)
    {
        if (method is null)
        {
            return DdimScheduler.RegisteredName;
        }

        if (method.GetValueKind() == System.Text.Json.JsonValueKind.Number)
        {
            int index = method.GetValue<int>();
            return index >= 0 && index < Methods.Length ? Methods[index] : throw new ArgumentOutOfRangeException(nameof(method), index, "Unknown sampling method.");
        }

        return method.GetValue<string>() switch
        {
            "Ddpm" => DdpmScheduler.RegisteredName,
            "Ddim" => DdimScheduler.RegisteredName,
            "DpmSolverPlusPlus" => DpmSolverScheduler.RegisteredName,
            "EulerAncestral" => EulerAncestralScheduler.RegisteredName,
            string other => throw new ArgumentOutOfRangeException(nameof(method), other, "Unknown sampling method."),
        };
    }
}
