using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The denoiser kinds model files and checkpoints can name: a kind's <see cref="DenoiserOptions.Kind"/> maps to its
/// options type, which rebuilds the network. The library's kinds are registered already; register your own before
/// loading a model file that uses it.
/// </summary>
public static class DenoiserKinds
{
    private static readonly ConcurrentDictionary<string, Type> Kinds = new(StringComparer.Ordinal)
    {
        [UNetOptions.KindName] = typeof(UNetOptions),
        [DiTOptions.KindName] = typeof(DiTOptions),
    };

    /// <summary>Gets the registered kinds.</summary>
    public static IReadOnlyCollection<string> Names => Kinds.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>Registers an options type under its <see cref="DenoiserOptions.Kind"/>.</summary>
    /// <typeparam name="TOptions">The options type; its parameterless constructor gives the kind's name.</typeparam>
    public static void Register<TOptions>()
        where TOptions : DenoiserOptions, new()
    {
        string kind = new TOptions().Kind;
        if (string.IsNullOrWhiteSpace(kind))
        {
            throw new ArgumentException($"{typeof(TOptions).Name}.Kind must name the kind.", nameof(TOptions));
        }

        if (!Kinds.TryAdd(kind, typeof(TOptions)) && Kinds[kind] != typeof(TOptions))
        {
            throw new ArgumentException($"The denoiser kind '{kind}' is registered already, for {Kinds[kind].Name}.", nameof(TOptions));
        }
    }

    /// <summary>The options type of a kind.</summary>
    internal static Type Resolve(string kind) => Kinds.TryGetValue(kind, out var type)
        ? type
        : throw new JsonException($"Unknown denoiser kind '{kind}' (known: {string.Join(", ", Names)}); register its options type with DenoiserKinds.Register before loading.");
}

/// <summary>
/// Reads and writes a <see cref="DenoiserOptions"/> as a JSON object whose "Kind" names its type. An object without
/// "Kind" is a U-Net (files written before the denoiser abstraction).
/// </summary>
internal sealed class DenoiserOptionsJsonConverter : JsonConverter<DenoiserOptions>
{
    public override DenoiserOptions? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (JsonNode.Parse(ref reader) is not JsonObject node)
        {
            throw new JsonException("The network settings must be a JSON object.");
        }

        string kind = UNetOptions.KindName;
        if (node[nameof(DenoiserOptions.Kind)] is JsonNode name)
        {
            kind = name.GetValue<string>();
            node.Remove(nameof(DenoiserOptions.Kind));
        }

        var type = DenoiserKinds.Resolve(kind);
        return (DenoiserOptions?)node.Deserialize(type, options) ?? throw new JsonException($"The {kind} settings are empty.");
    }

    public override void Write(Utf8JsonWriter writer, DenoiserOptions value, JsonSerializerOptions options)
    {
        var node = JsonSerializer.SerializeToNode(value, value.GetType(), options)!.AsObject();
        writer.WriteStartObject();
        writer.WriteString(nameof(DenoiserOptions.Kind), value.Kind);
        foreach (var (key, property) in node)
        {
            if (key == nameof(DenoiserOptions.Kind))
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
