using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Diffusion.Core.Diffusion;
using Microsoft.ML.Diffusion.Core.Sampling;

namespace Microsoft.ML.Diffusion.Export;

/// <summary>
/// A deterministic sampler as one ONNX graph: x_T in, images out. Each step runs the network (twice over, batched, with
/// classifier-free guidance for a class-conditional model), turns its output into x̂₀ (clamped when asked) and ε̂ exactly
/// as <see cref="GaussianDiffusion.PMeanVarianceFromOutput"/> does, and takes the scheduler's step with the coefficients
/// <see cref="DdimScheduler"/> or <see cref="DpmSolverScheduler"/> compute, in double precision, rounded once to float
/// as libtorch rounds them.
/// </summary>
internal sealed class SamplerGraph
{
    private readonly GaussianDiffusion diffusion;
    private readonly DenoiserGraph network;
    private readonly IReadOnlyList<Step> steps;
    private readonly bool clip;
    private readonly bool dpm;
    private readonly int channels;
    private readonly int classCount;

    private SamplerGraph(GaussianDiffusion diffusion, DenoiserGraph network, IReadOnlyList<Step> steps, bool clip, bool dpm)
    {
        this.diffusion = diffusion;
        this.network = network;
        this.steps = steps;
        this.clip = clip;
        this.dpm = dpm;
        channels = diffusion.Channels;
        classCount = diffusion.Model.ClassCount;
    }

    /// <summary>Gets the timesteps the graph visits, in order.</summary>
    public IReadOnlyList<int> Timesteps => steps.Select(s => s.Timestep).ToArray();

    /// <summary>The timesteps and coefficients of <paramref name="scheduler"/> on the diffusion's schedule, or a clear <see cref="NotSupportedException"/>.</summary>
    public static SamplerGraph Create(OnnxGraphBuilder root, GaussianDiffusion diffusion, DiffusionScheduler scheduler, bool clip)
    {
        var network = DenoiserGraph.Create(root, diffusion.Model, diffusion.ImageHeight, diffusion.ImageWidth);
        var (steps, dpm) = scheduler switch
        {
            DdimScheduler { Eta: 0 } ddim => (DdimSteps(diffusion, ddim), false),
            DdimScheduler ddim => throw new NotSupportedException(
                $"ONNX sampler export needs a deterministic sampler: DDIM with η = {ddim.Eta} draws fresh noise at every step. Export DDIM with η = 0, DPM-Solver++, or the network alone (OnnxGraphContent.Network) and keep the loop in code."),
            DpmSolverScheduler solver => (DpmSteps(diffusion, solver), true),
            _ => throw new NotSupportedException(
                $"ONNX sampler export supports DDIM with η = 0 and DPM-Solver++; the '{scheduler.Name}' scheduler ({scheduler.GetType().Name}) is not supported. Export the network alone (OnnxGraphContent.Network) and keep the loop in code."),
        };
        return new SamplerGraph(diffusion, network, steps, clip, dpm);
    }

    /// <summary>Adds the inputs, the steps and the outputs to the main graph.</summary>
    public void Build(OnnxGraphBuilder g, OnnxSamplerLoop loop)
    {
        long?[] imageDims = { null, channels, diffusion.ImageHeight, diffusion.ImageWidth };
        g.Input("noise", OnnxDataType.Float, imageDims);
        string? classes = null, guidance = null;
        if (classCount > 0)
        {
            g.Input("class", OnnxDataType.Int64, new long?[] { null });
            g.Input("guidance", OnnxDataType.Float, new long?[] { null });
            var unconditional = g.Node("Expand", new[] { g.Int64Vector(classCount), g.BatchSize("noise") });
            classes = g.Concat(0, "class", unconditional);
            guidance = g.Reshape("guidance", -1, 1, 1, 1);
        }

        string x;
        if (loop == OnnxSamplerLoop.Unrolled)
        {
            x = "noise";
            string? previous = null;
            foreach (var step in steps)
            {
                (x, previous) = UnrolledStep(g, step, x, previous, classes, guidance);
            }
        }
        else
        {
            x = Loop(g, classes, guidance);
        }

        var shifted = g.Add(x, g.FloatScalar(1f));
        g.NodeTo("images", "Clip", new[] { g.Mul(shifted, g.FloatScalar(0.5f)), g.FloatScalar(0f), g.FloatScalar(1f) });
        var rounded = g.Node("Clip", new[] { g.Node("Round", new[] { g.Mul(shifted, g.FloatScalar(127.5f)) }), g.FloatScalar(0f), g.FloatScalar(255f) });
        g.NodeTo("pixels", "Cast", new[] { rounded }, OnnxAttribute.Int("to", (long)OnnxDataType.UInt8));
        g.Output("images", OnnxDataType.Float, imageDims);
        g.Output("pixels", OnnxDataType.UInt8, imageDims);
    }

    private static List<Step> DdimSteps(GaussianDiffusion diffusion, DdimScheduler template)
    {
        var visited = Visited(diffusion, template);
        var alphaBar = diffusion.Schedule.AlphasCumprod;
        var result = new List<Step>();
        for (int i = 0; i < visited.Count; i++)
        {
            int t = visited[i];
            int next = i + 1 < visited.Count ? visited[i + 1] : -1;
            var step = Coefficients(diffusion, t);
            if (next >= 0)
            {
                // DdimScheduler.StepTo with η = 0: x_next = √ᾱ_next x̂₀ + √(1 − ᾱ_next) ε̂.
                double aNext = alphaBar[next];
                step = step with { StartWeight = (float)Math.Sqrt(aNext), NoiseWeight = (float)Math.Sqrt(Math.Max(0.0, 1 - aNext)) };
            }

            result.Add(step with { Last = next < 0 });
        }

        return result;
    }

    private static List<Step> DpmSteps(GaussianDiffusion diffusion, DpmSolverScheduler template)
    {
        var visited = Visited(diffusion, template);
        var alphaBar = diffusion.Schedule.AlphasCumprod;
        var result = new List<Step>();
        double previousStep = 0;
        for (int i = 0; i < visited.Count; i++)
        {
            int t = visited[i];
            int next = i + 1 < visited.Count ? visited[i + 1] : -1;
            var step = Coefficients(diffusion, t) with { Last = next < 0 };
            if (next >= 0)
            {
                // DpmSolverScheduler.StepTo: x_next = (σ_next/σ) x − α_next (e^(−h) − 1) D, D = x̂₀ or (1 + 1/2r) x̂₀ − (1/2r) x̂₀_prev.
                double alpha = Math.Sqrt(alphaBar[t]), sigma = Math.Sqrt(1 - alphaBar[t]);
                double alphaNext = Math.Sqrt(alphaBar[next]), sigmaNext = Math.Sqrt(1 - alphaBar[next]);
                double h = Math.Log(alphaNext / sigmaNext) - Math.Log(alpha / sigma);
                bool firstOrder = template.SolverOrder == 1 || i == 0 || (template.LowerOrderFinal && next == 0);
                if (!firstOrder)
                {
                    double r = previousStep / h;
                    step = step with { SecondOrder = true, CurrentWeight = (float)(1 + (1 / (2 * r))), PreviousWeight = (float)(1 / (2 * r)) };
                }

                step = step with { SampleWeight = (float)(sigmaNext / sigma), DataWeight = (float)(alphaNext * (Math.Exp(-h) - 1)) };
                previousStep = h;
            }

            result.Add(step);
        }

        return result;
    }

    private static IReadOnlyList<int> Visited(GaussianDiffusion diffusion, DiffusionScheduler template)
    {
        using var scheduler = template.Clone();
        scheduler.SetTimesteps(diffusion.Schedule);
        return scheduler.Timesteps.ToArray();
    }

    private static Step Coefficients(GaussianDiffusion diffusion, int t)
    {
        var s = diffusion.Schedule;
        long networkTime = diffusion.RespacedTimesteps is { } map ? map[t] : t;
        return new Step
        {
            Timestep = t,
            NetworkTime = networkTime,
            SqrtRecip = (float)s.SqrtRecipAlphasCumprod[t],
            SqrtRecipMinusOne = (float)s.SqrtRecipMinusOneAlphasCumprod[t],
            SqrtAlphaBar = (float)s.SqrtAlphasCumprod[t],
            SqrtOneMinusAlphaBar = (float)s.SqrtOneMinusAlphasCumprod[t],
        };
    }

    /// <summary>The guided network output (mean part) at x for the step's network time.</summary>
    private string Predict(OnnxGraphBuilder g, string x, string time, string? classes, string? guidance)
    {
        string input = classes is null ? x : g.Concat(0, x, x);
        var t = g.Node("Expand", new[] { time, g.BatchSize(input) });
        var output = network.Emit(g, input, t, classes);
        if (diffusion.Model.LearnedVariance)
        {
            output = g.Slice(output, 1, 0, channels);
        }

        if (classes is null)
        {
            return output;
        }

        // GaussianDiffusion.ModelOutput: ε(∅) + w·(ε(c) − ε(∅)), both halves of one batch.
        var halves = g.Split(output, 0, 2);
        return g.Add(halves[1], g.Mul(guidance!, g.Sub(halves[0], halves[1])));
    }

    /// <summary>x̂₀ (clamped when asked) and, for DDIM, ε̂, as PMeanVarianceFromOutput computes them.</summary>
    /// <remarks>The coefficients come as functions of their name in the schedule (SqrtRecip, …), made only when used.</remarks>
    private (string Start, string? Noise) Denoise(OnnxGraphBuilder g, string x, string output, Func<string, string> coefficient, bool needNoise)
    {
        var objective = diffusion.Objective;
        string start = objective switch
        {
            PredictionTarget.Noise => g.Sub(g.Mul(x, coefficient(nameof(Step.SqrtRecip))), g.Mul(output, coefficient(nameof(Step.SqrtRecipMinusOne)))),
            PredictionTarget.Start => output,
            _ => g.Sub(g.Mul(x, coefficient(nameof(Step.SqrtAlphaBar))), g.Mul(output, coefficient(nameof(Step.SqrtOneMinusAlphaBar)))),
        };
        if (clip)
        {
            start = g.Node("Clip", new[] { start, g.FloatScalar(-1f), g.FloatScalar(1f) });
        }

        if (!needNoise)
        {
            return (start, null);
        }

        string noise = objective == PredictionTarget.Noise && !clip ? output : g.Div(g.Sub(g.Mul(x, coefficient(nameof(Step.SqrtRecip))), start), coefficient(nameof(Step.SqrtRecipMinusOne)));
        return (start, noise);
    }

    private (string X, string? Previous) UnrolledStep(OnnxGraphBuilder g, Step step, string x, string? previous, string? classes, string? guidance)
    {
        var output = Predict(g, x, g.Int64Vector(step.NetworkTime), classes, guidance);
        var (start, noise) = Denoise(g, x, output, name => g.FloatScalar(Schedule(step, name)), needNoise: !dpm && !step.Last);
        if (step.Last)
        {
            return (start, null);
        }

        if (!dpm)
        {
            return (g.Add(g.Mul(start, g.FloatScalar(step.StartWeight)), g.Mul(noise!, g.FloatScalar(step.NoiseWeight))), null);
        }

        var data = step.SecondOrder ? g.Sub(g.Mul(start, g.FloatScalar(step.CurrentWeight)), g.Mul(previous!, g.FloatScalar(step.PreviousWeight))) : start;
        return (g.Sub(g.Mul(x, g.FloatScalar(step.SampleWeight)), g.Mul(data, g.FloatScalar(step.DataWeight))), start);
    }

    private string Loop(OnnxGraphBuilder g, string? classes, string? guidance)
    {
        // Per-step constants, looked up by the iteration number. The last step's coefficients make x_next = x̂₀ exactly:
        // DDIM 1·x̂₀ + 0·ε̂; DPM-Solver++ 0·x − (−1)·(1·x̂₀ − 0·prev).
        string Table(Func<Step, float> value) => g.Weight("step_table", steps.Select(value).ToArray(), steps.Count);
        var times = g.Int64s(steps.Select(s => s.NetworkTime).ToArray(), steps.Count);
        var scheduleTables = new Dictionary<string, string>(StringComparer.Ordinal);
        var first = Table(s => s.Last ? 1f : dpm ? (s.SecondOrder ? s.CurrentWeight : 1f) : s.StartWeight);
        var second = Table(s => s.Last ? 0f : dpm ? (s.SecondOrder ? s.PreviousWeight : 0f) : s.NoiseWeight);
        var sampleWeight = dpm ? Table(s => s.Last ? 0f : s.SampleWeight) : null;
        var dataWeight = dpm ? Table(s => s.Last ? -1f : s.DataWeight) : null;

        var body = g.Subgraph("sampler_step");
        string iteration = g.Unique("iteration"), conditionIn = g.Unique("cond_in"), xIn = g.Unique("x_in"), previousIn = g.Unique("previous_in");
        string conditionOut = g.Unique("cond_out"), xOut = g.Unique("x_out"), previousOut = g.Unique("previous_out");
        body.Input(iteration, OnnxDataType.Int64);
        body.Input(conditionIn, OnnxDataType.Bool);
        body.Graph.Inputs.Add(new OnnxValueInfo(xIn, OnnxDataType.Float, null));
        body.Graph.Inputs.Add(new OnnxValueInfo(previousIn, OnnxDataType.Float, null));
        string At(string table) => body.Node("Gather", new[] { table, iteration }, OnnxAttribute.Int("axis", 0));

        var output = Predict(body, xIn, body.Unsqueeze(At(times), 0), classes, guidance);
        var (start, noise) = Denoise(body, xIn, output, name => At(scheduleTables.TryGetValue(name, out var table) ? table : scheduleTables[name] = Table(s => Schedule(s, name))), needNoise: !dpm);
        body.NodeTo(conditionOut, "Identity", new[] { conditionIn });
        if (dpm)
        {
            var data = body.Sub(body.Mul(start, At(first)), body.Mul(previousIn, At(second)));
            body.NodeTo(xOut, "Sub", new[] { body.Mul(xIn, At(sampleWeight!)), body.Mul(data, At(dataWeight!)) });
            body.NodeTo(previousOut, "Identity", new[] { start });
        }
        else
        {
            body.NodeTo(xOut, "Add", new[] { body.Mul(start, At(first)), body.Mul(noise!, At(second)) });
            body.NodeTo(previousOut, "Identity", new[] { previousIn });
        }

        body.Graph.Outputs.Add(new OnnxValueInfo(conditionOut, OnnxDataType.Bool, Array.Empty<long?>()));
        body.Graph.Outputs.Add(new OnnxValueInfo(xOut, OnnxDataType.Float, null));
        body.Graph.Outputs.Add(new OnnxValueInfo(previousOut, OnnxDataType.Float, null));

        var zeros = g.Mul("noise", g.FloatScalar(0f));
        var results = g.Node("Loop", new[] { g.Int64Scalar(steps.Count), string.Empty, "noise", zeros }, 2, OnnxAttribute.Graph("body", body.Graph));
        return results[0];
    }

    private static float Schedule(Step step, string name) => name switch
    {
        nameof(Step.SqrtRecip) => step.SqrtRecip,
        nameof(Step.SqrtRecipMinusOne) => step.SqrtRecipMinusOne,
        nameof(Step.SqrtAlphaBar) => step.SqrtAlphaBar,
        _ => step.SqrtOneMinusAlphaBar,
    };

    private sealed record Step
    {
        public int Timestep { get; init; }

        public long NetworkTime { get; init; }

        public bool Last { get; init; }

        public float SqrtRecip { get; init; }

        public float SqrtRecipMinusOne { get; init; }

        public float SqrtAlphaBar { get; init; }

        public float SqrtOneMinusAlphaBar { get; init; }

        public float StartWeight { get; init; }

        public float NoiseWeight { get; init; }

        public bool SecondOrder { get; init; }

        public float CurrentWeight { get; init; }

        public float PreviousWeight { get; init; }

        public float SampleWeight { get; init; }

        public float DataWeight { get; init; }
    }
}
