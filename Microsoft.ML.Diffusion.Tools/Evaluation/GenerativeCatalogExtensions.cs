using System;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>The option search on <c>mlContext.Generative()</c>.</summary>
public static class GenerativeCatalogExtensions
{
    /// <summary>
    /// An AutoML-style experiment over the diffusion options: random configurations, successive halving, ranked by a
    /// validation metric, under a time budget.
    /// </summary>
    /// <param name="catalog">The catalog (<c>mlContext.Generative()</c>).</param>
    /// <param name="settings">The search space, budget and metric.</param>
    /// <returns>The experiment; call <see cref="DiffusionExperiment.Run"/>.</returns>
    public static DiffusionExperiment CreateDiffusionExperiment(this GenerativeCatalog catalog, DiffusionExperimentSettings settings)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new DiffusionExperiment(catalog.Context, settings);
    }
}
