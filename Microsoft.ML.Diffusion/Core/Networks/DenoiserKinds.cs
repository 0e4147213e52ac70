using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// The denoiser kinds model files and checkpoints can name: a kind's <see cref="DenoiserOptions.Kind"/> maps to its
/// options type, which rebuilds the network. The library's kinds are registered already; register your own before
/// loading a model file that uses it.
/// </summary>
public static class DenoiserKinds
{
    private static readonly NamedTypes<DenoiserOptions> Kinds = new(
        "denoiser kind",
        "DenoiserKinds.Register",
        StringComparer.Ordinal,
        new Dictionary<string, Type>
        {
            [UNetOptions.KindName] = typeof(UNetOptions),
            [DiTOptions.KindName] = typeof(DiTOptions),
            [ImprovedDiffusionUNetOptions.KindName] = typeof(ImprovedDiffusionUNetOptions),
            [DiffusersUNetOptions.KindName] = typeof(DiffusersUNetOptions),
        });

    /// <summary>Gets the registered kinds.</summary>
    public static IReadOnlyCollection<string> Names => Kinds.Names;

    /// <summary>Registers an options type under its <see cref="DenoiserOptions.Kind"/>.</summary>
    /// <typeparam name="TOptions">The options type; its parameterless constructor gives the kind's name.</typeparam>
    /// <exception cref="ArgumentException">The kind has no name, or another type is registered under it.</exception>
    public static void Register<TOptions>()
        where TOptions : DenoiserOptions, new() => Kinds.Register(new TOptions().Kind, typeof(TOptions));

    /// <summary>The kinds, for the JSON converter.</summary>
    internal static NamedTypes<DenoiserOptions> Types => Kinds;
}

/// <summary>
/// Reads and writes a <see cref="DenoiserOptions"/> as a JSON object whose "Kind" names its type. An object without
/// "Kind" is a U-Net (files written before the denoiser abstraction).
/// </summary>
internal sealed class DenoiserOptionsJsonConverter : NamedTypeJsonConverter<DenoiserOptions>
{
    public DenoiserOptionsJsonConverter()
        : base(nameof(DenoiserOptions.Kind), DenoiserKinds.Types, options => options.Kind, unnamed: UNetOptions.KindName)
    {
    }
}
