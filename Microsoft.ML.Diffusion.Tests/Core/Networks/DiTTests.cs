using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Diffusion;
using Microsoft.ML.Diffusion.Core.Networks;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Networks;

[TestClass]
public sealed class DiTTests
{
    private static DiTOptions Tiny(int channels = 1, int patch = 2, bool learnedVariance = false, int classCount = 0) => new()
    {
        PatchSize = patch,
        HiddenSize = 32,
        Depth = 2,
        Heads = 2,
        MlpRatio = 2,
        Channels = channels,
        LearnedVariance = learnedVariance,
        ClassCount = classCount,
    };

    // ---- (a) parameter count -----------------------------------------------------------------------------------------

    /// <summary>The parameter count from the architecture, layer by layer (weights + biases).</summary>
    private static long ExpectedParameters(int patch, int hidden, int depth, double mlpRatio, int channels, bool learned, int classes)
    {
        long d = hidden, p2 = (long)patch * patch, c = channels, cOut = channels * (learned ? 2 : 1);
        long m = (long)(hidden * mlpRatio);
        const long Frequencies = 256;
        long patchify = (c * p2 * d) + d;                                  // conv C → D, kernel p×p, bias
        long timeMlp = ((Frequencies * d) + d) + ((d * d) + d);            // Linear(256, D), Linear(D, D)
        long labels = classes > 0 ? (classes + 1L) * d : 0;               // one extra row: "no label"
        long block = ((d * 3 * d) + (3 * d))                              // qkv
            + ((d * d) + d)                                               // attention output projection
            + ((d * m) + m) + ((m * d) + d)                               // MLP
            + ((d * 6 * d) + (6 * d));                                    // adaLN-Zero modulation: 6 vectors
        long final = ((d * 2 * d) + (2 * d))                              // final adaLN modulation: shift, scale
            + ((d * p2 * cOut) + (p2 * cOut));                            // linear decoder to a patch
        return patchify + timeMlp + labels + (depth * block) + final;
    }

    [TestMethod]
    [DataRow(2, 32, 2, 2, 2.0, 1, false, 0)]
    [DataRow(4, 64, 3, 4, 4.0, 3, true, 10)]
    [DataRow(1, 16, 1, 1, 1.5, 2, false, 1)]
    [DataRow(7, 48, 2, 3, 2.5, 1, true, 0)]
    public void ParameterCountMatchesTheClosedForm(int patch, int hidden, int depth, int heads, double mlpRatio, int channels, bool learned, int classes)
    {
        using var dit = new DiT(new DiTOptions
        {
            PatchSize = patch, HiddenSize = hidden, Depth = depth, Heads = heads, MlpRatio = mlpRatio,
            Channels = channels, LearnedVariance = learned, ClassCount = classes,
        });
        Assert.AreEqual(ExpectedParameters(patch, hidden, depth, mlpRatio, channels, learned, classes), dit.ParameterCount);
    }

    [TestMethod]
    public void ParameterCountOfDiTS2MatchesAHandCountAndTheFormula()
    {
        // D = 384, m = 1536, p = 2, C = 4, C_out = 8, 1000 classes, 12 blocks:
        // 6,528 + 246,528 + 384,384 + 12 · 2,659,968 + 308,000 = 32,865,056 (the paper's "33M", without its frozen 256×384 position table).
        Assert.AreEqual(32_865_056L, ExpectedParameters(patch: 2, hidden: 384, depth: 12, mlpRatio: 4, channels: 4, learned: true, classes: 1000));
        using var dit = new DiT(new DiTOptions { PatchSize = 2, HiddenSize = 384, Depth = 12, Heads = 6, Channels = 4, LearnedVariance = true, ClassCount = 1000 });
        Assert.AreEqual(32_865_056L, dit.ParameterCount);
    }

    [TestMethod]
    public void SavedWeightsHoldOnlyTheParametersOnEveryDevice()
    {
        using var dit = new DiT(Tiny(classCount: 3));
        var parameterNames = dit.named_parameters().Select(p => p.name).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        CollectionAssert.AreEqual(parameterNames, dit.state_dict().Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray());
        dit.to(new Device(DeviceType.META));
        CollectionAssert.AreEqual(parameterNames, dit.state_dict().Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray(), "after .to(meta)");
    }

    // ---- (b) shapes, adaLN-Zero and conditioning ---------------------------------------------------------------------

    [TestMethod]
    [DataRow(1, 8, 8, 2, false, 0)]
    [DataRow(3, 16, 8, 4, false, 0)]
    [DataRow(2, 12, 6, 2, true, 0)]
    [DataRow(1, 8, 8, 1, true, 5)]
    [DataRow(3, 9, 6, 3, false, 2)]
    public void OutputHasInputShapeAndDoubledChannelsWhenVarianceIsLearned(int channels, int height, int width, int patch, bool learned, int classes)
    {
        manual_seed(1);
        using var dit = new DiT(Tiny(channels, patch, learned, classes));
        Assert.AreEqual(channels * (learned ? 2 : 1), dit.OutputChannels);
        Perturb(dit, "modulation", "final_layer.linear");
        using var x = randn(3, channels, height, width);
        using var t = tensor(new long[] { 0, 5, 9 });
        using var labels = classes > 0 ? tensor(new long[] { 0, classes - 1, classes }) : null;
        using var y = dit.forward(x, t, labels);
        CollectionAssert.AreEqual(new long[] { 3, channels * (learned ? 2 : 1), height, width }, y.shape);
        Assert.IsTrue(y.isfinite().all().item<bool>());
        Assert.IsTrue(y.abs().mean().item<float>() > 1e-3, "the perturbed network predicts something");
    }

    [TestMethod]
    public void AtInitialisationTheOutputIsExactlyZero()
    {
        manual_seed(2);
        using var dit = new DiT(Tiny(channels: 3, learnedVariance: true, classCount: 4));
        foreach (var (name, p) in dit.named_parameters().Where(p => p.name.Contains("modulation", StringComparison.Ordinal) || p.name.StartsWith("final_layer.", StringComparison.Ordinal)))
        {
            Assert.AreEqual(0f, p.abs().max().item<float>(), $"{name} starts at zero");
        }

        using var x = randn(4, 3, 8, 8) * 3;
        using var t = tensor(new long[] { 0, 1, 17, 999 });
        using var labels = tensor(new long[] { 0, 3, 4, 2 });
        using var y = dit.forward(x, t, labels);
        CollectionAssert.AreEqual(new long[] { 4, 6, 8, 8 }, y.shape);
        Assert.AreEqual(0f, y.abs().max().item<float>());
    }

    [TestMethod]
    public void TimeAndClassReachTheOutputOnlyThroughTheZeroInitialisedModulations()
    {
        manual_seed(3);
        using var dit = new DiT(Tiny(classCount: 3));
        using var x = randn(1, 1, 8, 8).expand(2, 1, 8, 8).contiguous();
        using var sameTime = tensor(new long[] { 4, 4 });
        using var otherTimes = tensor(new long[] { 0, 30 });
        using var twoClasses = tensor(new long[] { 0, 1 });

        // Only the output layer perturbed: every gate and modulation is still exactly 0, so each block is the identity and
        // the final norm ignores c; the output is nonzero but the same for any time and any class.
        Perturb(dit, "final_layer.linear");
        using (var y = dit.forward(x, sameTime, twoClasses))
        using (var z = dit.forward(x, otherTimes, null))
        {
            Assert.IsTrue(y.abs().mean().item<float>() > 1e-3);
            Assert.AreEqual(0f, (y[0] - y[1]).abs().max().item<float>(), "class changed the output with zero modulations");
            Assert.AreEqual(0f, (z[0] - y[0]).abs().max().item<float>(), "time or the null label changed the output with zero modulations");
        }

        // The modulations perturbed too: now class, the null label and time all change the output.
        Perturb(dit, "modulation");
        using var classes = dit.forward(x, sameTime, twoClasses);
        using var times = dit.forward(x, otherTimes, tensor(new long[] { 0, 0 }));
        using var unlabelled = dit.forward(x, sameTime, null);
        Assert.IsTrue((classes[0] - classes[1]).abs().mean().item<float>() > 1e-3, "class has no effect");
        Assert.IsTrue((times[0] - times[1]).abs().mean().item<float>() > 1e-3, "time has no effect");
        Assert.IsTrue((unlabelled[0] - classes[0]).abs().mean().item<float>() > 1e-3, "the null label acts like class 0");
    }

    [TestMethod]
    public void PositionEmbeddingIsTheTwoDimensionalSineCosineTable()
    {
        using var embedding = new Microsoft.ML.Diffusion.Core.Networks.PatchEmbedding(1, 8, 2);
        using var table = embedding.Table(3, 5, float32, CPU); // 3 rows × 5 columns of patches, D = 8: ω = (1, 10000^(−1/2))
        CollectionAssert.AreEqual(new long[] { 15, 8 }, table.shape);
        var omega = new[] { 1.0, Math.Pow(10000, -0.5) };
        for (int r = 0; r < 3; r++)
        {
            for (int c = 0; c < 5; c++)
            {
                var expected = new[]
                {
                    Math.Sin(c * omega[0]), Math.Sin(c * omega[1]), Math.Cos(c * omega[0]), Math.Cos(c * omega[1]),
                    Math.Sin(r * omega[0]), Math.Sin(r * omega[1]), Math.Cos(r * omega[0]), Math.Cos(r * omega[1]),
                };
                var actual = table[(r * 5) + c].data<float>().ToArray();
                for (int k = 0; k < 8; k++)
                {
                    Assert.AreEqual(expected[k], actual[k], 1e-6, $"row {r}, column {c}, channel {k}");
                }
            }
        }

        // The tokens are the patch convolution plus the table, in row-major patch order.
        using var x = randn(2, 1, 6, 10);
        using var tokens = embedding.call(x);
        using var patchOnly = tokens - table;
        var conv = embedding.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var direct = nn.functional.conv2d(x, conv["proj.weight"], conv["proj.bias"], strides: new long[] { 2, 2 }).flatten(2).transpose(1, 2);
        Assert.IsTrue((patchOnly - direct).abs().max().item<float>() < 1e-5);
    }

    [TestMethod]
    public void AttentionIsSoftmaxAttentionOverTokensWithEitherKernel()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        const int D = 12, Heads = 3, Tokens = 5;
        using var layer = new Microsoft.ML.Diffusion.Core.Networks.TokenAttention(D, Heads);
        layer.to(float64);
        var p = layer.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        var x = randn(new long[] { 2, Tokens, D }, float64);
        var qkv = nn.functional.linear(x, p["qkv.weight"], p["qkv.bias"]).chunk(3, -1)
            .Select(t => t.view(2, Tokens, Heads, D / Heads).transpose(1, 2)).ToArray(); // N heads T d
        var weights = (einsum("nhid,nhjd->nhij", qkv[0], qkv[1]) / Math.Sqrt(D / Heads)).softmax(-1);
        var attended = einsum("nhij,nhjd->nhid", weights, qkv[2]).transpose(1, 2).reshape(2, Tokens, D);
        var expected = nn.functional.linear(attended, p["proj.weight"], p["proj.bias"]);
        Assert.IsTrue((layer.call(x) - expected).abs().max().item<double>() < 1e-10);

        var q = randn(new long[] { 2, Heads, Tokens, 4 }, float64);
        var k = randn(new long[] { 2, Heads, Tokens, 4 }, float64);
        var v = randn(new long[] { 2, Heads, Tokens, 4 }, float64);
        var fused = Microsoft.ML.Diffusion.Core.Networks.TokenAttention.Attend(q, k, v, textbook: false);
        var written = Microsoft.ML.Diffusion.Core.Networks.TokenAttention.Attend(q, k, v, textbook: true);
        Assert.IsTrue((fused - written).abs().max().item<double>() < 1e-12);
    }

    [TestMethod]
    public void AdaptiveLayerNormIsLayerNormThenScaleAndShift()
    {
        using var scope = NewDisposeScope();
        var x = (randn(new long[] { 3, 7, 16 }, float64) * 4) + 2;
        var shift = randn(new long[] { 3, 16 }, float64);
        var scale = randn(new long[] { 3, 16 }, float64);
        var expected = (nn.functional.layer_norm(x, new long[] { 16 }, eps: 1e-6) * (1 + scale.unsqueeze(1))) + shift.unsqueeze(1);
        var actual = Microsoft.ML.Diffusion.Core.Networks.AdaptiveLayerNorm.Modulate(x, shift, scale);
        Assert.IsTrue((actual - expected).abs().max().item<double>() < 1e-10);
    }

    // ---- (c) validation ----------------------------------------------------------------------------------------------

    [TestMethod]
    public void RejectsSizesNotDivisibleByThePatchSize()
    {
        using var dit = new DiT(Tiny(patch: 4));
        Assert.AreEqual(4, dit.Options.SizeDivisor);
        using var t = tensor(new long[] { 1 });
        using var tall = randn(1, 1, 10, 8);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => dit.forward(tall, t));
        StringAssert.Contains(ex.Message, "divisible by 4");
        StringAssert.Contains(ex.Message, "10×8");
        using var wide = randn(1, 1, 8, 6);
        Assert.ThrowsExactly<ArgumentException>(() => dit.forward(wide, t));
        using var rgb = randn(1, 3, 8, 8);
        ex = Assert.ThrowsExactly<ArgumentException>(() => dit.forward(rgb, t));
        StringAssert.Contains(ex.Message, "N×1×H×W");
    }

    [TestMethod]
    [DataRow(nameof(DiTOptions.PatchSize), "PatchSize must be positive")]
    [DataRow(nameof(DiTOptions.HiddenSize), "multiple of 4")]
    [DataRow(nameof(DiTOptions.Heads), "divide HiddenSize (32)")]
    [DataRow(nameof(DiTOptions.Depth), "Depth must be at least 1")]
    [DataRow(nameof(DiTOptions.MlpRatio), "MlpRatio must be positive")]
    [DataRow(nameof(DiTOptions.Channels), "Channels must be positive")]
    [DataRow(nameof(DiTOptions.ClassCount), "ClassCount must be 0")]
    public void RejectsInvalidOptionsNamingTheOption(string property, string message)
    {
        var options = Tiny();
        switch (property)
        {
            case nameof(DiTOptions.PatchSize): options.PatchSize = 0; break;
            case nameof(DiTOptions.HiddenSize): options.HiddenSize = 30; break;
            case nameof(DiTOptions.Heads): options.Heads = 3; break;
            case nameof(DiTOptions.Depth): options.Depth = 0; break;
            case nameof(DiTOptions.MlpRatio): options.MlpRatio = double.NaN; break;
            case nameof(DiTOptions.Channels): options.Channels = 0; break;
            case nameof(DiTOptions.ClassCount): options.ClassCount = -1; break;
            default: Assert.Fail(property); break;
        }

        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DiT(options));
        Assert.AreEqual(property, ex.ParamName);
        StringAssert.Contains(ex.Message, message);
    }

    [TestMethod]
    public void RejectsAnMlpRatioThatLeavesNoHiddenUnits()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DiT(new DiTOptions { HiddenSize = 8, Heads = 2, MlpRatio = 0.1 }));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DiT(new DiTOptions { MlpRatio = -1 }));
        Assert.ThrowsExactly<ArgumentNullException>(() => new DiT(null!));
    }

    [TestMethod]
    public void OptionsAreCopiedNotShared()
    {
        var options = Tiny(classCount: 2);
        using var dit = new DiT(options);
        options.HiddenSize = 64;
        options.ClassCount = 0;
        Assert.AreEqual(32, dit.Shape.HiddenSize);
        Assert.AreEqual(2, dit.Options.ClassCount);
        var clone = dit.Shape.Clone();
        Assert.AreNotSame(dit.Shape, clone);
        Assert.AreEqual(dit.Shape.MlpRatio, clone.MlpRatio);
        Assert.AreEqual(dit.Shape.PatchSize, clone.PatchSize);
    }

    // ---- (e) devices -------------------------------------------------------------------------------------------------

    [TestMethod]
    public void FollowsToMetaAndRunsThere()
    {
        var meta = new Device(DeviceType.META);
        // The meta device rejects a stray CPU tensor exactly as CUDA does, so a forward pass there proves that nothing is
        // left on the CPU.
        Assert.ThrowsExactly<ExternalException>(() => randn(2, 3, device: meta) + randn(2, 3));

        using var dit = new DiT(Tiny(channels: 2, learnedVariance: true, classCount: 3));
        dit.to(meta);
        foreach (var (name, p) in dit.named_parameters())
        {
            Assert.AreEqual(DeviceType.META, p.device_type, name);
        }

        foreach (var (name, b) in dit.named_buffers())
        {
            Assert.AreEqual(DeviceType.META, b.device_type, name);
        }

        int tensorFields = 0;
        foreach (var module in dit.modules().Prepend(dit))
        {
            for (var type = module.GetType(); type is not null; type = type.BaseType)
            {
                foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public | BindingFlags.DeclaredOnly))
                {
                    if (typeof(Tensor).IsAssignableFrom(field.FieldType) && field.GetValue(module) is Tensor value && !value.IsInvalid)
                    {
                        tensorFields++;
                        Assert.AreEqual(DeviceType.META, value.device_type, $"{type.Name}.{field.Name}");
                    }
                }
            }
        }

        Assert.IsTrue(tensorFields > 0, "the reflection walk found the modules' tensor fields");

        using var x = randn(new long[] { 2, 2, 8, 8 }, device: meta);
        using var t = arange(2L, int64, meta);
        using var labels = arange(2L, int64, meta);
        using var y = dit.forward(x, t, labels);
        Assert.AreEqual(DeviceType.META, y.device_type);
        CollectionAssert.AreEqual(new long[] { 2, 4, 8, 8 }, y.shape);
        using var unlabelled = dit.forward(x, t, null);
        Assert.AreEqual(DeviceType.META, unlabelled.device_type);
    }

    // ---- (d) learning ------------------------------------------------------------------------------------------------

    [TestMethod]
    public void ATinyDiTLearnsToPredictTheNoiseOnTwoPatterns()
    {
        const int T = 50, Steps = 150, Batch = 32, Seed = 1;
        manual_seed(Seed);
        using var dit = new DiT(new DiTOptions { PatchSize = 2, HiddenSize = 32, Depth = 2, Heads = 2, MlpRatio = 2, Channels = 1 });

        // DDPM's linear schedule rescaled to T steps (β from 1e-4·1000/T to 0.02·1000/T), ᾱ in double precision.
        var alphaBar = new double[T];
        double product = 1;
        for (int i = 0; i < T; i++)
        {
            double beta = (1e-4 + ((0.02 - 1e-4) * i / (T - 1))) * 1000 / T;
            product *= 1 - beta;
            alphaBar[i] = product;
        }

        using var sqrtAlphaBar = tensor(alphaBar.Select(Math.Sqrt).ToArray()).to(float32);
        using var sqrtOneMinusAlphaBar = tensor(alphaBar.Select(a => Math.Sqrt(1 - a)).ToArray()).to(float32);
        Tensor QSample(Tensor x0, Tensor t, Tensor noise) =>
            (sqrtAlphaBar.index_select(0, t).view(-1, 1, 1, 1) * x0) + (sqrtOneMinusAlphaBar.index_select(0, t).view(-1, 1, 1, 1) * noise);

        using var patterns = TinyModels.Patterns();
        using var data = patterns.repeat(Batch / 2, 1, 1, 1);

        // A fixed evaluation set: each pattern at every timestep, fixed noise.
        var evalGenerator = new Generator(99, CPU);
        using var evalX0 = patterns.repeat(T, 1, 1, 1);
        using var evalT = arange(T, int64).repeat_interleave(2L);
        using var evalNoise = randn(evalX0.shape, generator: evalGenerator);
        using var evalXt = QSample(evalX0, evalT, evalNoise);
        double Evaluate()
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            return nn.functional.mse_loss(dit.forward(evalXt, evalT), evalNoise).item<float>();
        }

        double before = Evaluate();
        var generator = new Generator(Seed + 100, CPU);
        using var optimizer = optim.Adam(dit.parameters(), lr: 3e-3);
        // One intra-op thread: these tensors are far too small to share, and on a busy 2-core machine the second thread's
        // spin-waiting cost 10–20× the CPU time per step (150–220 ms against 8–16 ms, measured).
        int threads = get_num_threads();
        set_num_threads(1);
        try
        {
            for (int step = 0; step < Steps; step++)
            {
                using var scope = NewDisposeScope();
                var t = randint(0, T, new long[] { Batch }, dtype: int64, generator: generator);
                var noise = randn(data.shape, generator: generator);
                optimizer.zero_grad();
                var loss = nn.functional.mse_loss(dit.forward(QSample(data, t, noise), t), noise);
                loss.backward();
                optimizer.step();
            }
        }
        finally
        {
            set_num_threads(threads);
        }

        double after = Evaluate();
        Console.WriteLine($"noise-prediction MSE {before:F4} → {after:F4}");
        using var noiseEnergy = evalNoise.square().mean();
        Assert.AreEqual(noiseEnergy.item<float>(), before, 1e-6, "the untrained DiT predicts 0, so its error is E[ε²]");
        // Seeds 1, 2, 3, 4, 5 and 11 (for both the weights and the training draws) reached 0.046–0.055; the bar leaves about
        // 3× margin, and a network that ignored its input could not get below E[ε²] ≈ 1.
        Assert.IsTrue(after < 0.15, $"noise-prediction MSE {before:F4} → {after:F4}");
    }

    private static void Perturb(DiT dit, params string[] nameParts)
    {
        using var noGrad = no_grad();
        foreach (var (name, p) in dit.named_parameters().Where(p => nameParts.Any(part => p.name.Contains(part, StringComparison.Ordinal))))
        {
            p.add_(randn_like(p) * 0.1);
        }
    }
}

[TestClass]
public sealed class DiTThroughTheTrainerTests
{
    [TestMethod]
    public void TheTrainerOptionSelectsADiTThatLearnsSavesAndLoads()
    {
        var context = new MLContext(seed: 1);
        var losses = new System.Collections.Generic.List<double>();
        var options = MLNetTestData.Options(steps: 60);
        options.Network = new DiTOptions { PatchSize = 2, HiddenSize = 32, Depth = 2, Heads = 2 };
        options.LabelColumnName = nameof(PixelRow.Label);
        options.LearningRate = 3e-3;
        options.LogEvery = 20;
        options.Progress = new SyncProgress<TrainingProgress>(p => losses.Add(p.Loss));
        using var sampler = context.Generative().Diffusion(options).Fit(MLNetTestData.Patterns(context, copies: 4));
        Assert.AreEqual(DiTOptions.KindName, sampler.Model.Network.Kind);
        Assert.AreEqual(2, sampler.Model.ClassCount, "the trainer set the class count on the DiT's options");
        Assert.HasCount(3, losses);
        Assert.IsTrue(losses[^1] < losses[0] * 0.7, "the loss falls: " + string.Join(", ", losses));

        string file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"mldiffusion-dit-{System.Guid.NewGuid():N}.zip");
        try
        {
            var seeds = MLNetTestData.Seeds(context, 4, 5);
            context.Model.Save(sampler, seeds.Schema, file);
            using var loaded = DiffusionSampler.Load(new MLContext(), file);
            var shape = (DiTOptions)loaded.Model.Network;
            Assert.AreEqual(32, shape.HiddenSize);
            CollectionAssert.AreEqual(MLNetTestData.PixelHashes(sampler.Transform(seeds)).ToArray(), MLNetTestData.PixelHashes(loaded.Transform(seeds)).ToArray());
        }
        finally
        {
            System.IO.File.Delete(file);
        }
    }
}
