using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Samplers by name, as <see cref="DiffusionSamplerOptions.SchedulerName"/> and model files refer to them: "ddpm", "ddim",
/// "dpm-solver++" and "euler-a" are built in; register your own <see cref="TimestepScheduler"/> to use it through ML.NET
/// (register it again, under the same name, in a process that loads a model file naming it).
/// </summary>
public static class SchedulerRegistry
{
    private static readonly ConcurrentDictionary<string, Func<DiffusionSamplerOptions, TimestepScheduler>> Factories = new(StringComparer.OrdinalIgnoreCase)
    {
        ["ddpm"] = _ => new DdpmScheduler(),
        ["ddim"] = o => new DdimScheduler { Steps = o.Steps, Eta = o.Eta },
        ["dpm-solver++"] = o => new DpmSolverScheduler { Steps = o.Steps, Spacing = o.Spacing },
        ["euler-a"] = o => new EulerAncestralScheduler { Steps = o.Steps, Eta = o.Eta > 0 ? o.Eta : 1, Spacing = o.Spacing },
    };

    /// <summary>Gets the registered names.</summary>
    public static IReadOnlyCollection<string> Names => Factories.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>Registers (or replaces) a sampler under a name.</summary>
    /// <param name="name">The name (case-insensitive).</param>
    /// <param name="factory">Builds the sampler from the options' settings (steps, η, spacing…); guidance, clamping and the micro-batch size are applied after it.</param>
    public static void Register(string name, Func<DiffusionSamplerOptions, TimestepScheduler> factory)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ArgumentException("A sampler needs a name.", nameof(name));
        }

        Factories[name] = factory ?? throw new ArgumentNullException(nameof(factory));
    }

    /// <summary>Builds the sampler registered under a name.</summary>
    /// <param name="name">The name.</param>
    /// <param name="options">The settings.</param>
    /// <returns>A new sampler.</returns>
    public static TimestepScheduler Create(string name, DiffusionSamplerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Factories.TryGetValue(name ?? throw new ArgumentNullException(nameof(name)), out var factory)
            ? factory(options)
            : throw new ArgumentOutOfRangeException(nameof(name), name, $"No sampler is registered as '{name}'; known: {string.Join(", ", Names)}.");
    }

    /// <summary>The registered name of a built-in method.</summary>
    internal static TimestepScheduler Create(SamplingMethod method, DiffusionSamplerOptions options) => Create(
        method switch
        {
            SamplingMethod.Ddpm => "ddpm",
            SamplingMethod.Ddim => "ddim",
            SamplingMethod.DpmSolverPlusPlus => "dpm-solver++",
            SamplingMethod.EulerAncestral => "euler-a",
            _ => throw new ArgumentOutOfRangeException(nameof(method), method, "Unknown sampling method."),
        },
        options);
}
