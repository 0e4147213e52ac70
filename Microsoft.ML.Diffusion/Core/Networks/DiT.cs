using System;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>
/// A diffusion transformer (DiT; Peebles &amp; Xie 2023, "Scalable Diffusion Models with Transformers"): maps
/// (x_t, t[, class]) to ε, x₀ or v (and, when the variance is learned, its interpolation value), like <see cref="UNet"/>.
/// </summary>
/// <remarks>
/// <para>
/// Layout: patchify (a convolution with kernel = stride = <see cref="DiTOptions.PatchSize"/> p, to width D =
/// <see cref="DiTOptions.HiddenSize"/>) plus a fixed 2-D sine-cosine position embedding (computed for the input's grid, not
/// a parameter); the conditioning c = MLP(sinusoidal(t)) (+ a class embedding with one extra row, index
/// <see cref="DenoiserOptions.ClassCount"/>, meaning "no label", for classifier-free guidance), the MLP being
/// Linear(256 → D) → SiLU → Linear(D → D) on a 256-wide sinusoidal embedding; <see cref="DiTOptions.Depth"/> transformer
/// blocks with adaLN-Zero conditioning on c; a final adaptive layer norm and a linear layer to p·p·C_out values per token;
/// unpatchify to N×C_out×H×W.
/// </para>
/// <para>
/// Initialisation as in the paper: Xavier-uniform linear layers with zero biases, N(0, 0.02²) timestep MLP and class
/// embedding, and zero adaLN modulations and output layer — so every block starts as the identity and the untrained
/// network predicts exactly 0.
/// </para>
/// <para>
/// Parameters, with m = ⌊D·MlpRatio⌋, C_out = C (2C with learned variance) and K classes:
/// (C·p²·D + D) + (256·D + D + D² + D) + [K &gt; 0] (K + 1)·D + Depth·(10D² + 2D·m + 11D + m) + (2D² + 2D + D·p²·C_out + p²·C_out).
/// </para>
/// </remarks>
public sealed class DiT : Denoiser
{
    /// <summary>The width of the sinusoidal timestep embedding that feeds the timestep MLP (256, as in the paper).</summary>
    public const int TimeFrequencySize = 256;

    private readonly PatchEmbedding patch_embedding;
    private readonly SinusoidalPositionEmbedding time_embedding;
    private readonly Linear time_mlp_in;
    private readonly Linear time_mlp_out;
    private readonly Embedding? class_embedding;
    private readonly ModuleList<DiTBlock> blocks;
    private readonly DiTFinalLayer final_layer;

    /// <summary>Initializes a new instance of the <see cref="DiT"/> class.</summary>
    /// <param name="options">The shape; validated here.</param>
    public DiT(DiTOptions options)
        : base(nameof(DiT))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.options = options.Clone();
        int hidden = options.HiddenSize;

        patch_embedding = new PatchEmbedding(options.Channels, hidden, options.PatchSize);
        time_embedding = new SinusoidalPositionEmbedding(TimeFrequencySize);
        time_mlp_in = nn.Linear(TimeFrequencySize, hidden);
        time_mlp_out = nn.Linear(hidden, hidden);
        class_embedding = options.ClassCount > 0 ? nn.Embedding(options.ClassCount + 1, hidden) : null;
        blocks = nn.ModuleList(Enumerable.Range(0, options.Depth).Select(_ => new DiTBlock(hidden, options.Heads, options.MlpHiddenSize)).ToArray());
        final_layer = new DiTFinalLayer(hidden, options.PatchSize, OutputChannels);

        TransformerInit.SmallNormal(time_mlp_in);
        TransformerInit.SmallNormal(time_mlp_out);
        if (class_embedding is not null)
        {
            using (no_grad())
            {
                nn.init.normal_(class_embedding.weight!, std: 0.02);
            }
        }

        RegisterComponents();
    }

    // Not a covariant override: TorchSharp's Module.to indexes public properties by name and fails on two "Options".
    private readonly DiTOptions options;

    /// <inheritdoc/>
    public override DenoiserOptions Options => options;

    /// <summary>Gets the DiT's shape (the same object as <see cref="Options"/>, typed).</summary>
    public DiTOptions Shape => options;

    /// <summary>Predicts from a batch of noisy images, their timesteps and (for a class-conditional network) labels.</summary>
    /// <param name="x">Images N×C×H×W; H and W divisible by the patch size.</param>
    /// <param name="time">Timesteps, a vector of N integers (0-based).</param>
    /// <param name="classes">Labels in [0, ClassCount] (ClassCount = no label), a vector of N integers; null = no label.</param>
    /// <returns>N×<see cref="Denoiser.OutputChannels"/>×H×W.</returns>
    public override Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(time);
        CheckInput(x, "DiT", "the patch size");
        using var scope = NewDisposeScope();
        long n = x.shape[0], p = options.PatchSize, rows = x.shape[2] / p, columns = x.shape[3] / p;

        var tokens = patch_embedding.call(x); // N×T×D
        var c = time_mlp_out.call(nn.functional.silu(time_mlp_in.call(time_embedding.call(time).to(x.dtype))));
        if (class_embedding is not null)
        {
            // The rows of the embedding table, looked up by advanced indexing rather than Embedding's forward (index_select,
            // which has no meta-device kernel in libtorch); the same rows, the same gradient.
            using var unconditional = options.ClassCount.ToScalar();
            var labels = classes ?? full(n, unconditional, dtype: int64, device: x.device);
            c = c.Plus(class_embedding.weight![TensorIndex.Tensor(labels.to(int64))]);
        }

        foreach (var block in blocks)
        {
            tokens = block.call(tokens, c);
        }

        // Unpatchify: token (r, c) holds its patch in (row, column, channel) order.
        var patches = final_layer.call(tokens, c).view(n, rows, columns, p, p, OutputChannels);
        return patches.permute(0, 5, 1, 3, 2, 4).reshape(n, OutputChannels, rows * p, columns * p).MoveToOuterDisposeScope();
    }

}
