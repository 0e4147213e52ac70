using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.Diffusion.Core.Runtime;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Schedulers by name, as model files store them: "ddpm", "ddim", "dpm-solver++" and "euler-a" are built in. Register your
/// own <see cref="DiffusionScheduler"/> (one line, <see cref="Register{TScheduler}"/>) to store it in model files; register
/// it again in a process that loads a model file naming it. A scheduler is stored as a JSON object: its
/// <see cref="DiffusionScheduler.Name"/> under "Name", then its own public settings.
/// </summary>
public static class SchedulerRegistry
{
    private static readonly NamedTypes<DiffusionScheduler> Types = new(
        "scheduler",
        "SchedulerRegistry.Register",
        StringComparer.OrdinalIgnoreCase,
        new Dictionary<string, Type>
        {
            [DdpmScheduler.RegisteredName] = typeof(DdpmScheduler),
            [DdimScheduler.RegisteredName] = typeof(DdimScheduler),
            [DpmSolverScheduler.RegisteredName] = typeof(DpmSolverScheduler),
            [EulerAncestralScheduler.RegisteredName] = typeof(EulerAncestralScheduler),
        });

    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>Gets the registered names.</summary>
    public static IReadOnlyCollection<string> Names => Types.Names;

    /// <summary>Registers a scheduler type under the <see cref="DiffusionScheduler.Name"/> of a default instance.</summary>
    /// <typeparam name="TScheduler">The scheduler; its parameterless constructor gives its default settings and its name.</typeparam>
    /// <exception cref="ArgumentException">When another type is registered under the name already.</exception>
    public static void Register<TScheduler>()
        where TScheduler : DiffusionScheduler, new()
    {
        using var probe = new TScheduler();
        Types.Register(probe.Name, typeof(TScheduler));
    }

    /// <summary>Creates the scheduler registered under a name, with its default settings.</summary>
    /// <param name="name">The name (case-insensitive).</param>
    /// <returns>A new scheduler.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When no scheduler is registered under the name.</exception>
    public static DiffusionScheduler Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Types.Contains(name)
            ? (DiffusionScheduler)Activator.CreateInstance(Types.Resolve(name))!
            : throw new ArgumentOutOfRangeException(nameof(name), name, $"No scheduler is registered as '{name}'; known: {string.Join(", ", Names)}.");
    }

    /// <summary>Writes a scheduler as JSON: its name and its settings.</summary>
    /// <param name="scheduler">The scheduler.</param>
    /// <returns>The JSON object, for example <c>{"Name":"ddim","Steps":50,"Eta":0}</c>.</returns>
    public static string ToJson(DiffusionScheduler scheduler)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        return JsonSerializer.Serialize(scheduler, Json);
    }

    /// <summary>Reads a scheduler written by <see cref="ToJson"/> (its type must be registered).</summary>
    /// <param name="json">The JSON object.</param>
    /// <returns>A new scheduler with those settings.</returns>
    /// <exception cref="JsonException">When the JSON is not a scheduler or names an unregistered one.</exception>
    public static DiffusionScheduler FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        return JsonSerializer.Deserialize<DiffusionScheduler>(json, Json) ?? throw new JsonException("The scheduler JSON is null.");
    }

    /// <summary>The schedulers, for the JSON converter.</summary>
    internal static NamedTypes<DiffusionScheduler> Registered => Types;
}

/// <summary>
/// Reads and writes a <see cref="DiffusionScheduler"/> as a JSON object whose "Name" says which registered type it is; the
/// other members are that type's public settings.
/// </summary>
internal sealed class DiffusionSchedulerJsonConverter : NamedTypeJsonConverter<DiffusionScheduler>
{
    public DiffusionSchedulerJsonConverter()
        : base(nameof(DiffusionScheduler.Name), SchedulerRegistry.Registered, scheduler => scheduler.Name, unnamed: null)
    {
    }
}
