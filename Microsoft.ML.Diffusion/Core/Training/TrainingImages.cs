using System;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Training;

/// <summary>Training images (and labels) as CPU tensors in model space [−1, 1], whatever they were read from.</summary>
internal sealed class TrainingImages : IDisposable
{
    public TrainingImages(Tensor images, Tensor? labels, int classCount, IReadOnlyList<string>? classNames)
    {
        Images = images;
        Labels = labels;
        ClassCount = classCount;
        ClassNames = classNames;
    }

    /// <summary>Gets N×C×H×W float32 in [−1, 1].</summary>
    public Tensor Images { get; }

    /// <summary>Gets N int64 class indices (ClassCount = no label), or null.</summary>
    public Tensor? Labels { get; }

    public int ClassCount { get; }

    public IReadOnlyList<string>? ClassNames { get; }

    public long Count => Images.shape[0];

    public void Dispose()
    {
        Images.Dispose();
        Labels?.Dispose();
    }
}
