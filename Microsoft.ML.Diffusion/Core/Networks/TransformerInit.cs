using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Core.Networks;

/// <summary>The initialisations of the DiT (Peebles &amp; Xie 2023, §3.2 and their reference code).</summary>
internal static class TransformerInit
{
    /// <summary>Xavier-uniform weight, zero bias: the default of every linear layer in the transformer.</summary>
    public static void XavierUniform(Linear layer)
    {
        using (no_grad())
        {
            nn.init.xavier_uniform_(layer.weight!);
            nn.init.zeros_(layer.bias!);
        }
    }

    /// <summary>Weight drawn from N(0, 0.02²), zero bias: the timestep MLP.</summary>
    public static void SmallNormal(Linear layer)
    {
        using (no_grad())
        {
            nn.init.normal_(layer.weight!, std: 0.02);
            nn.init.zeros_(layer.bias!);
        }
    }

    /// <summary>Zero weight and bias: the adaLN-Zero modulations and the output layer, so each block starts as the identity.</summary>
    public static void Zero(Linear layer)
    {
        using (no_grad())
        {
            nn.init.zeros_(layer.weight!);
            nn.init.zeros_(layer.bias!);
        }
    }
}
