using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Diffusion;

/// <summary>
/// What the reverse process p_θ(x_{t−1} | x_t) says at one step: its mean and variance, and the network's
/// estimates of x₀ and ε implied by the output (whatever the objective).
/// </summary>
/// <param name="Mean">μ_θ(x_t, t), the posterior mean given the predicted x₀.</param>
/// <param name="Variance">Σ_θ(x_t, t), broadcastable to the images.</param>
/// <param name="LogVariance">log Σ_θ(x_t, t), broadcastable to the images.</param>
/// <param name="PredictedStart">x̂₀ (clamped to [−1, 1] when asked).</param>
/// <param name="PredictedNoise">ε̂, consistent with x̂₀ and x_t.</param>
public sealed record DiffusionPrediction(Tensor Mean, Tensor Variance, Tensor LogVariance, Tensor PredictedStart, Tensor PredictedNoise);
