using System;
using System.Collections.Generic;
using Microsoft.ML.Diffusion.Core.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tools.Evaluation;

/// <summary>
/// The InceptionV3 that FID is defined with (the TensorFlow graph of 2015-12-05, as pytorch-fid's <c>fid_inception_v3</c>
/// lays it out): torchvision's Inception3 stem and blocks with 1008 classes, BatchNorm ε = 10⁻³, and the FID patches —
/// Mixed_5b–5d, 6b–6e and 7b average-pool without counting padding, Mixed_7c max-pools. Its output is the 2048-d pool3
/// feature (the global average of Mixed_7c). Submodules are registered under the names of the PyTorch state dict, which
/// is the weight file's contract; the classifier <c>fc</c> is kept so that the file loads strictly, never used.
/// </summary>
internal sealed class FidInceptionV3 : nn.Module<Tensor, Tensor>
{
    private readonly List<nn.Module<Tensor, Tensor>> stem = new();
    private readonly List<nn.Module<Tensor, Tensor>> mixed = new();

    public FidInceptionV3()
        : base(nameof(FidInceptionV3))
    {
        Stem("Conv2d_1a_3x3", new BasicConv(3, 32, 3, 3, stride: 2));
        Stem("Conv2d_2a_3x3", new BasicConv(32, 32, 3, 3));
        Stem("Conv2d_2b_3x3", new BasicConv(32, 64, 3, 3, padH: 1, padW: 1));
        Stem("Conv2d_3b_1x1", new BasicConv(64, 80, 1, 1));
        Stem("Conv2d_4a_3x3", new BasicConv(80, 192, 3, 3));
        Mixed("Mixed_5b", new BlockA(192, 32));
        Mixed("Mixed_5c", new BlockA(256, 64));
        Mixed("Mixed_5d", new BlockA(288, 64));
        Mixed("Mixed_6a", new BlockB(288));
        Mixed("Mixed_6b", new BlockC(768, 128));
        Mixed("Mixed_6c", new BlockC(768, 160));
        Mixed("Mixed_6d", new BlockC(768, 160));
        Mixed("Mixed_6e", new BlockC(768, 192));
        Mixed("Mixed_7a", new BlockD(768));
        Mixed("Mixed_7b", new BlockE(1280, maxPool: false));
        Mixed("Mixed_7c", new BlockE(2048, maxPool: true));
        register_module("fc", nn.Linear(2048, 1008));
    }

    /// <summary>Pool3 features of images already resized to 299×299 and scaled to [−1, 1].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = stem[0].call(x);
        x = stem[1].call(x);
        x = stem[2].call(x);
        x = nn.functional.max_pool2d(x, Three, Two);
        x = stem[3].call(x);
        x = stem[4].call(x);
        x = nn.functional.max_pool2d(x, Three, Two);
        foreach (var block in mixed)
        {
            x = block.call(x);
        }

        return x.mean(new long[] { 2, 3 }).MoveToOuterDisposeScope();
    }

    private static readonly long[] Three = { 3, 3 };
    private static readonly long[] Two = { 2, 2 };
    private static readonly long[] One = { 1, 1 };

    private void Stem(string name, BasicConv module)
    {
        stem.Add(module);
        register_module(name, module);
    }

    private void Mixed(string name, nn.Module<Tensor, Tensor> module)
    {
        mixed.Add(module);
        register_module(name, module);
    }

    // TensorFlow's 3×3 average pool over the padded border divides by the pixels it covers (count_include_pad = False).
    private static Tensor AveragePool(Tensor x) => nn.functional.avg_pool2d(x, Three, One, One, count_include_pad: false);

    private static Tensor MaxPool(Tensor x) => nn.functional.max_pool2d(x, Three, One, One);

    /// <summary>
    /// Folds every BatchNorm into its convolution for evaluation: w' = w·γ/√(σ² + ε), b' = β − μ·γ/√(σ² + ε), so each
    /// layer is one convolution with a bias and a ReLU. The same function up to float rounding (≈ 10⁻⁶ relative); the
    /// state dict is unchanged. Call after the weights are loaded and the module is on its device.
    /// </summary>
    public void FoldBatchNorms()
    {
        foreach (var module in modules())
        {
            if (module is BasicConv layer)
            {
                layer.Fold();
            }
        }
    }

    /// <summary>conv (no bias) → BatchNorm (ε = 10⁻³) → ReLU; state keys <c>conv.weight</c>, <c>bn.*</c>.</summary>
    private sealed class BasicConv : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv;
        private readonly BatchNorm2d bn;
        private readonly long[] stride;
        private readonly long[] padding;
        private Tensor? foldedWeight;
        private Tensor? foldedBias;

        public BasicConv(long input, long output, long kernelH, long kernelW, long stride = 1, long padH = 0, long padW = 0)
            : base(nameof(BasicConv))
        {
            conv = nn.Conv2d(input, output, (kernelH, kernelW), (stride, stride), (padH, padW), bias: false);
            bn = nn.BatchNorm2d(output, eps: 1e-3);
            this.stride = new[] { stride, stride };
            padding = new[] { padH, padW };
            RegisterComponents();
        }

        public void Fold()
        {
            using var scope = NewDisposeScope();
            using (no_grad())
            {
                using Scalar eps = 1e-3.ToScalar();
                var scale = bn.weight!.div(bn.running_var!.Plus(eps).sqrt());
                foldedWeight?.Dispose();
                foldedBias?.Dispose();
                foldedWeight = conv.weight!.mul(scale.reshape(-1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).DetachFromDisposeScope(); // owned by this layer, not by the caller's scope
                foldedBias = bn.bias!.sub(bn.running_mean!.mul(scale)).DetachFromDisposeScope();
            }
        }

        public override Tensor forward(Tensor x) => foldedWeight is null
            ? nn.functional.relu(bn.call(conv.call(x)))
            : nn.functional.relu(nn.functional.conv2d(x, foldedWeight, foldedBias, stride, padding));

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                foldedWeight?.Dispose();
                foldedBias?.Dispose();
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>A module whose children are registered under explicit state-dict names.</summary>
    private abstract class Block : nn.Module<Tensor, Tensor>
    {
        protected Block(string name)
            : base(name)
        {
        }

        // The children are registered under their state-dict names by Add; the fields only hold them for forward.
        protected override void RegisterComponents()
        {
        }

        protected BasicConv Add(string name, long input, long output, long kernelH, long kernelW, long stride = 1, long padH = 0, long padW = 0)
        {
            var module = new BasicConv(input, output, kernelH, kernelW, stride, padH, padW);
            register_module(name, module);
            return module;
        }
    }

    /// <summary>InceptionA (Mixed_5b–5d) with the FID average pool.</summary>
    private sealed class BlockA : Block
    {
        private readonly BasicConv b1, b5a, b5b, d1, d2, d3, pool;

        public BlockA(long input, long poolFeatures)
            : base(nameof(BlockA))
        {
            b1 = Add("branch1x1", input, 64, 1, 1);
            b5a = Add("branch5x5_1", input, 48, 1, 1);
            b5b = Add("branch5x5_2", 48, 64, 5, 5, padH: 2, padW: 2);
            d1 = Add("branch3x3dbl_1", input, 64, 1, 1);
            d2 = Add("branch3x3dbl_2", 64, 96, 3, 3, padH: 1, padW: 1);
            d3 = Add("branch3x3dbl_3", 96, 96, 3, 3, padH: 1, padW: 1);
            pool = Add("branch_pool", input, poolFeatures, 1, 1);
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return cat(new[] { b1.call(x), b5b.call(b5a.call(x)), d3.call(d2.call(d1.call(x))), pool.call(AveragePool(x)) }, 1).MoveToOuterDisposeScope();
        }
    }

    /// <summary>InceptionB (Mixed_6a): stride-2 reduction, max pool.</summary>
    private sealed class BlockB : Block
    {
        private readonly BasicConv b3, d1, d2, d3;

        public BlockB(long input)
            : base(nameof(BlockB))
        {
            b3 = Add("branch3x3", input, 384, 3, 3, stride: 2);
            d1 = Add("branch3x3dbl_1", input, 64, 1, 1);
            d2 = Add("branch3x3dbl_2", 64, 96, 3, 3, padH: 1, padW: 1);
            d3 = Add("branch3x3dbl_3", 96, 96, 3, 3, stride: 2);
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return cat(new[] { b3.call(x), d3.call(d2.call(d1.call(x))), nn.functional.max_pool2d(x, Three, Two) }, 1).MoveToOuterDisposeScope();
        }
    }

    /// <summary>InceptionC (Mixed_6b–6e): factorised 7×7 convolutions, FID average pool.</summary>
    private sealed class BlockC : Block
    {
        private readonly BasicConv b1, s1, s2, s3, d1, d2, d3, d4, d5, pool;

        public BlockC(long input, long c7)
            : base(nameof(BlockC))
        {
            b1 = Add("branch1x1", input, 192, 1, 1);
            s1 = Add("branch7x7_1", input, c7, 1, 1);
            s2 = Add("branch7x7_2", c7, c7, 1, 7, padW: 3);
            s3 = Add("branch7x7_3", c7, 192, 7, 1, padH: 3);
            d1 = Add("branch7x7dbl_1", input, c7, 1, 1);
            d2 = Add("branch7x7dbl_2", c7, c7, 7, 1, padH: 3);
            d3 = Add("branch7x7dbl_3", c7, c7, 1, 7, padW: 3);
            d4 = Add("branch7x7dbl_4", c7, c7, 7, 1, padH: 3);
            d5 = Add("branch7x7dbl_5", c7, 192, 1, 7, padW: 3);
            pool = Add("branch_pool", input, 192, 1, 1);
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var single = s3.call(s2.call(s1.call(x)));
            var twice = d5.call(d4.call(d3.call(d2.call(d1.call(x)))));
            return cat(new[] { b1.call(x), single, twice, pool.call(AveragePool(x)) }, 1).MoveToOuterDisposeScope();
        }
    }

    /// <summary>InceptionD (Mixed_7a): stride-2 reduction, max pool.</summary>
    private sealed class BlockD : Block
    {
        private readonly BasicConv a1, a2, s1, s2, s3, s4;

        public BlockD(long input)
            : base(nameof(BlockD))
        {
            a1 = Add("branch3x3_1", input, 192, 1, 1);
            a2 = Add("branch3x3_2", 192, 320, 3, 3, stride: 2);
            s1 = Add("branch7x7x3_1", input, 192, 1, 1);
            s2 = Add("branch7x7x3_2", 192, 192, 1, 7, padW: 3);
            s3 = Add("branch7x7x3_3", 192, 192, 7, 1, padH: 3);
            s4 = Add("branch7x7x3_4", 192, 192, 3, 3, stride: 2);
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return cat(new[] { a2.call(a1.call(x)), s4.call(s3.call(s2.call(s1.call(x)))), nn.functional.max_pool2d(x, Three, Two) }, 1).MoveToOuterDisposeScope();
        }
    }

    /// <summary>InceptionE (Mixed_7b with the FID average pool, Mixed_7c with the FID max pool).</summary>
    private sealed class BlockE : Block
    {
        private readonly bool maxPool;
        private readonly BasicConv b1, a1, a2a, a2b, d1, d2, d3a, d3b, pool;

        public BlockE(long input, bool maxPool)
            : base(nameof(BlockE))
        {
            this.maxPool = maxPool;
            b1 = Add("branch1x1", input, 320, 1, 1);
            a1 = Add("branch3x3_1", input, 384, 1, 1);
            a2a = Add("branch3x3_2a", 384, 384, 1, 3, padW: 1);
            a2b = Add("branch3x3_2b", 384, 384, 3, 1, padH: 1);
            d1 = Add("branch3x3dbl_1", input, 448, 1, 1);
            d2 = Add("branch3x3dbl_2", 448, 384, 3, 3, padH: 1, padW: 1);
            d3a = Add("branch3x3dbl_3a", 384, 384, 1, 3, padW: 1);
            d3b = Add("branch3x3dbl_3b", 384, 384, 3, 1, padH: 1);
            pool = Add("branch_pool", input, 192, 1, 1);
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var a = a1.call(x);
            var d = d2.call(d1.call(x));
            var pooled = maxPool ? MaxPool(x) : AveragePool(x);
            return cat(new[] { b1.call(x), a2a.call(a), a2b.call(a), d3a.call(d), d3b.call(d), pool.call(pooled) }, 1).MoveToOuterDisposeScope();
        }
    }
}
