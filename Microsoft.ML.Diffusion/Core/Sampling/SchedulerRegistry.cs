using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Core.Sampling;

/// <summary>
/// Schedulers by name, as model files store them: "ddpm", "ddim", "dpm-solver++" and "euler-a" are built in. Register your
/// own <see cref="DiffusionScheduler"/> (one line, <see cref="Register{TScheduler}"/>) to store it in model files; register
/// it again in a process that loads a model file naming it. A scheduler is stored as a JSON object: its
/// <see cref="DiffusionScheduler.Name"/> under "Name", then its own public settings.
/// </summary>
public static class SchedulerRegistry
{
    private static readonly ConcurrentDictionary<string, Type> Types = new(StringComparer.OrdinalIgnoreCase)
    {
        [DdpmScheduler.RegisteredName] = typeof(DdpmScheduler),
        [DdimScheduler.RegisteredName] = typeof(DdimScheduler),
        [DpmSolverScheduler.RegisteredName] = typeof(DpmSolverScheduler),
        [EulerAncestralScheduler.RegisteredName] = typeof(EulerAncestralScheduler),
    };

    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>Gets the registered names.</summary>
    public static IReadOnlyCollection<string> Names => Types.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>Registers a scheduler type under the <see cref="DiffusionScheduler.Name"/> of a default instance.</summary>
    /// <typeparam name="TScheduler">The scheduler; its parameterless constructor gives its default settings and its name.</typeparam>
    /// <exception cref="ArgumentException">When another type is registered under the name already.</exception>
    public static void Register<TScheduler>()
        where TScheduler : DiffusionScheduler, new()
    {
        using var probe = new TScheduler();
        string name = probe.Name;
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ArgumentException($"{typeof(TScheduler).Name}.Name must name the scheduler.", nameof(TScheduler));
        }

        if (!Types.TryAdd(name, typeof(TScheduler)) && Types[name] != typeof(TScheduler))
        {
            throw new ArgumentException($"The scheduler name '{name}' is registered already, for {Types[name].Name}.", nameof(TScheduler));
        }
    }

    /// <summary>Creates the scheduler registered under a name, with its default settings.</summary>
    /// <param name="name">The name (case-insensitive).</param>
    /// <returns>A new scheduler.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When no scheduler is registered under the name.</exception>
    public static DiffusionScheduler Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Types.TryGetValue(name, out var type)
            ? (DiffusionScheduler)Activator.CreateInstance(type)!
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

    /// <summary>The scheduler type registered under a name.</summary>
    internal static Type Resolve(string name) => Types.TryGetValue(name, out var type)
        ? type
        : throw new JsonException($"Unknown scheduler '{name}' (known: {string.Join(", ", Names)}); register it with SchedulerRegistry.Register before loading.");
}

/// <summary>
/// Reads and writes a <see cref="DiffusionScheduler"/> as a JSON object whose "Name" says which registered type it is; the
/// other members are that type's public settings.
/// </summary>
internal sealed class DiffusionSchedulerJsonConverter : JsonConverter<DiffusionScheduler>
{
    private const string NameProperty = "Name";

    // Members of the base class that are not settings ([JsonIgnore] there; an override does not inherit the attribute).
    private static readonly HashSet<string> NotSettings = typeof(DiffusionScheduler).GetProperties()
        .Where(p => p.IsDefined(typeof(JsonIgnoreAttribute), inherit: true))
        .Select(p => p.Name)
        .ToHashSet(StringComparer.Ordinal);

    public override DiffusionScheduler? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (JsonNode.Parse(ref reader) is not JsonObject node)
        {
            throw new JsonException("A scheduler must be a JSON object.");
        }

        if (node[NameProperty] is not JsonValue name || !name.TryGetValue(out string? value) || string.IsNullOrWhiteSpace(value))
        {
            throw new JsonException("A scheduler's JSON object must name it under \"Name\".");
        }

        node.Remove(NameProperty);
        var type = SchedulerRegistry.Resolve(value);
        return (DiffusionScheduler?)node.Deserialize(type, options) ?? throw new JsonException($"The {value} settings are empty.");
    }

    public override void Write(Utf8JsonWriter writer, DiffusionScheduler value, JsonSerializerOptions options)
    {
        var node = JsonSerializer.SerializeToNode(value, value.GetType(), options)!.AsObject();
        writer.WriteStartObject();
        writer.WriteString(NameProperty, value.Name);
        foreach (var (key, property) in node)
        {
            if (key == NameProperty || NotSettings.Contains(key))
            {
                continue;
            }

            writer.WritePropertyName(key);
            if (property is null)
            {
                writer.WriteNullValue();
            }
            else
            {
                property.WriteTo(writer, options);
            }
        }

        writer.WriteEndObject();
    }
}
