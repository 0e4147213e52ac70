using System;
using System.IO;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Training;
using Microsoft.VisualStudio.TestTools.UnitTesting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Tests.Core.Training;

[TestClass]
public sealed class FusedAdamWTests
{
    [TestMethod]
    public void EveryStepEqualsTorchSharpsAdamW()
    {
        using var reference = TinyModels.Diffusion(timesteps: 20, seed: 4);
        using var fused = TinyModels.Diffusion(timesteps: 20, seed: 4);
        using var torchAdamW = optim.AdamW(reference.Model.parameters(), lr: 3e-3, beta1: 0.9, beta2: 0.99, weight_decay: 0.05);
        using var ours = new FusedAdamW(fused.Model.parameters(), 3e-3, beta1: 0.9, beta2: 0.99, weightDecay: 0.05);
        using var images = TinyModels.Patterns().repeat(2, 1, 1, 1);
        for (int step = 0; step < 6; step++)
        {
            using var scope = NewDisposeScope();
            double lr = 3e-3 * (step + 1) / 6; // a changing learning rate, as in the warm-up
            foreach (var group in torchAdamW.ParamGroups)
            {
                group.LearningRate = lr;
            }

            ours.LearningRate = lr;
            torchAdamW.zero_grad();
            ours.ZeroGrad();
            using var g1 = new Generator((ulong)(10 + step), CPU);
            using var g2 = new Generator((ulong)(10 + step), CPU);
            reference.Loss(images, null, g1).backward();
            fused.Loss(images, null, g2).backward();
            torchAdamW.step();
            ours.Step();
        }

        double worst = reference.Model.parameters().Zip(fused.Model.parameters()).Max(p => (p.First - p.Second).abs().max().item<float>());
        Assert.IsTrue(worst < 1e-6, $"the fused AdamW drifted from TorchSharp's by {worst:E2} after 6 steps");
        Assert.AreEqual(6L, ours.Steps);
    }

    [TestMethod]
    public void GradientsAccumulateIntoTheFlatBufferAndTheParametersAreViewsOfIt()
    {
        using var diffusion = TinyModels.Diffusion(timesteps: 20, seed: 5);
        using var optimizer = new FusedAdamW(diffusion.Model.parameters(), 1e-3);
        var parameters = diffusion.Model.parameters().ToArray();
        Assert.AreEqual(parameters.Sum(p => p.numel()), optimizer.FlatParameters.numel());
        using var images = TinyModels.Patterns();
        using var generator = new Generator(3, CPU);
        diffusion.Loss(images, null, generator).backward();
        using var concatenated = cat(parameters.Select(p => p.grad!.flatten()).ToArray());
        Assert.IsTrue(concatenated.abs().sum().item<float>() > 0, "the backward pass produced gradients");
        Assert.AreEqual(0f, (optimizer.FlatGradients - concatenated).abs().max().item<float>(), "autograd added into the flat gradient buffer");

        // A second backward accumulates; ZeroGrad clears every gradient at once.
        using var first = optimizer.FlatGradients.clone();
        using var generator2 = new Generator(3, CPU);
        diffusion.Loss(images, null, generator2).backward();
        Assert.IsTrue(optimizer.FlatGradients.allclose(first * 2, rtol: 1e-5, atol: 1e-7), "gradients accumulate in place");
        optimizer.ZeroGrad();
        Assert.IsTrue(parameters.All(p => p.grad!.abs().max().item<float>() == 0));

        // Writing the flat buffer writes the parameters.
        using (no_grad())
        {
            optimizer.FlatParameters.fill_(0.25f);
        }

        Assert.IsTrue(parameters.All(p => p.eq(0.25f).all().item<bool>()), "the parameters are views of the flat buffer");
    }

    [TestMethod]
    public void TheStateRoundTripsThroughTorchSharpsAdamWLayout()
    {
        // TorchSharp's AdamW takes 3 steps and saves; a fused optimizer on a copy of those weights loads that state, and
        // both go on for 3 more steps: the weights agree. Then the fused state loads back into TorchSharp's AdamW.
        using var reference = TinyModels.Diffusion(timesteps: 20, seed: 6);
        using var copy = TinyModels.Diffusion(timesteps: 20, seed: 6);
        using var torchAdamW = optim.AdamW(reference.Model.parameters(), lr: 2e-3, beta1: 0.9, beta2: 0.99, weight_decay: 0.01);
        using var images = TinyModels.Patterns();
        void TorchStep(int seed)
        {
            using var scope = NewDisposeScope();
            torchAdamW.zero_grad();
            using var g = new Generator((ulong)seed, CPU);
            reference.Loss(images, null, g).backward();
            torchAdamW.step();
        }

        for (int i = 0; i < 3; i++)
        {
            TorchStep(20 + i);
        }

        using var saved = new MemoryStream();
        torchAdamW.save_state_dict(new BinaryWriter(saved));
        using (no_grad())
        {
            foreach (var (to, from) in copy.Model.parameters().Zip(reference.Model.parameters()))
            {
                to.copy_(from);
            }
        }

        using var fused = new FusedAdamW(copy.Model.parameters(), 2e-3, beta1: 0.9, beta2: 0.99, weightDecay: 0.01);
        saved.Position = 0;
        fused.Load(new BinaryReader(saved));
        Assert.AreEqual(3L, fused.Steps);
        for (int i = 0; i < 3; i++)
        {
            TorchStep(30 + i);
            using var scope = NewDisposeScope();
            fused.ZeroGrad();
            using var g = new Generator((ulong)(30 + i), CPU);
            copy.Loss(images, null, g).backward();
            fused.Step();
        }

        double worst = reference.Model.parameters().Zip(copy.Model.parameters()).Max(p => (p.First - p.Second).abs().max().item<float>());
        Assert.IsTrue(worst < 1e-6, $"after loading TorchSharp's state: {worst:E2}");

        using var ours = new MemoryStream();
        fused.Save(new BinaryWriter(ours));
        ours.Position = 0;
        torchAdamW.load_state_dict(new BinaryReader(ours));
        using var again = new MemoryStream();
        torchAdamW.save_state_dict(new BinaryWriter(again));
        CollectionAssert.AreEqual(ours.ToArray(), again.ToArray(), "TorchSharp reads the fused state and writes the same bytes");
    }

    [TestMethod]
    public void StateOfAnotherOptimizerOrShapeIsRefused()
    {
        using var small = TinyModels.Diffusion(timesteps: 20, seed: 7);
        using var adam = optim.Adam(small.Model.parameters(), lr: 1e-3);
        using var stream = new MemoryStream();
        adam.save_state_dict(new BinaryWriter(stream));
        using var fused = new FusedAdamW(small.Model.parameters(), 1e-3);
        stream.Position = 0;
        var error = Assert.ThrowsExactly<InvalidDataException>(() => fused.Load(new BinaryReader(stream)));
        StringAssert.Contains(error.Message, "'Adam'");
    }
}
