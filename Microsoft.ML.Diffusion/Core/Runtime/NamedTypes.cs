using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Core.Runtime;

/// <summary>
/// The types of one family that model files name — the denoiser kinds, the schedulers — by name: the built-in ones, and
/// those an application registers before it loads a file that names them.
/// </summary>
/// <typeparam name="TBase">The family's base type.</typeparam>
internal sealed class NamedTypes<TBase>
    where TBase : class
{
    private readonly ConcurrentDictionary<string, Type> types;
    private readonly string family;
    private readonly string registration;

    /// <summary>Initializes a new instance of the <see cref="NamedTypes{TBase}"/> class.</summary>
    /// <param name="family">What the names name, in messages ("denoiser kind", "scheduler").</param>
    /// <param name="registration">The call that registers one, in messages ("DenoiserKinds.Register").</param>
    /// <param name="comparer">How names compare.</param>
    /// <param name="builtIn">The built-in names and types.</param>
    public NamedTypes(string family, string registration, StringComparer comparer, IEnumerable<KeyValuePair<string, Type>> builtIn)
    {
        this.family = family;
        this.registration = registration;
        types = new ConcurrentDictionary<string, Type>(builtIn, comparer);
    }

    /// <summary>Gets the registered names, sorted.</summary>
    public IReadOnlyCollection<string> Names => types.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>Registers a type under a name; registering the same type again is allowed, another type under a taken name is not.</summary>
    /// <param name="name">The name.</param>
    /// <param name="type">The type.</param>
    /// <exception cref="ArgumentException">The name is empty, or taken by another type.</exception>
    public void Register(string name, Type type)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ArgumentException($"{type.Name} must name its {family}.", nameof(name));
        }

        if (!types.TryAdd(name, type) && types[name] != type)
        {
            throw new ArgumentException($"The {family} '{name}' is registered already, for {types[name].Name}.", nameof(name));
        }
    }

    /// <summary>Whether a name is registered.</summary>
    public bool Contains(string name) => types.ContainsKey(name);

    /// <summary>The type registered under a name.</summary>
    /// <exception cref="JsonException">No type is (as a file that names an unknown one is damaged or needs a registration).</exception>
    public Type Resolve(string name) => types.TryGetValue(name, out var type)
        ? type
        : throw new JsonException($"Unknown {family} '{name}' (known: {string.Join(", ", Names)}); register it with {registration} before loading.");
}

/// <summary>
/// Reads and writes a member of a <see cref="NamedTypes{TBase}"/> family as a JSON object: first the name under
/// <c>discriminator</c>, then the type's own public settings; reading resolves the name to the registered type.
/// </summary>
/// <typeparam name="TBase">The family's base type.</typeparam>
internal abstract class NamedTypeJsonConverter<TBase> : JsonConverter<TBase>
    where TBase : class
{
    private readonly string discriminator;
    private readonly NamedTypes<TBase> types;
    private readonly Func<TBase, string> nameOf;
    private readonly string? unnamed;
    private readonly HashSet<string> skipped;

    /// <summary>Initializes a new instance of the <see cref="NamedTypeJsonConverter{TBase}"/> class.</summary>
    /// <param name="discriminator">The property that holds the name.</param>
    /// <param name="types">The family.</param>
    /// <param name="nameOf">A member's name.</param>
    /// <param name="unnamed">The name an object without the discriminator stands for (files older than it), or null to refuse one.</param>
    protected NamedTypeJsonConverter(string discriminator, NamedTypes<TBase> types, Func<TBase, string> nameOf, string? unnamed)
    {
        this.discriminator = discriminator;
        this.types = types;
        this.nameOf = nameOf;
        this.unnamed = unnamed;

        // Members of the base type that are not settings ([JsonIgnore] there; an override does not inherit the attribute).
        skipped = typeof(TBase).GetProperties()
            .Where(p => p.IsDefined(typeof(JsonIgnoreAttribute), inherit: true))
            .Select(p => p.Name)
            .Append(discriminator)
            .ToHashSet(StringComparer.Ordinal);
    }

    /// <inheritdoc/>
    public override TBase? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (JsonNode.Parse(ref reader) is not JsonObject node)
        {
            throw new JsonException($"The {typeof(TBase).Name} settings must be a JSON object.");
        }

        string name;
        if (node[discriminator] is JsonNode named)
        {
            if (named is not JsonValue value || !value.TryGetValue(out string? text) || string.IsNullOrWhiteSpace(text))
            {
                throw new JsonException($"The {typeof(TBase).Name} settings must name it under \"{discriminator}\".");
            }

            name = text;
            node.Remove(discriminator);
        }
        else
        {
            name = unnamed ?? throw new JsonException($"The {typeof(TBase).Name} settings must name it under \"{discriminator}\".");
        }

        return (TBase?)node.Deserialize(types.Resolve(name), options) ?? throw new JsonException($"The {name} settings are empty.");
    }

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, TBase value, JsonSerializerOptions options)
    {
        var node = JsonSerializer.SerializeToNode(value, value.GetType(), options)!.AsObject();
        writer.WriteStartObject();
        writer.WriteString(discriminator, nameOf(value));
        foreach (var (key, property) in node)
        {
            if (skipped.Contains(key))
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
