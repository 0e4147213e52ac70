namespace Microsoft.ML.Diffusion.Onnx;

/// <summary>
/// The 32-bit Mersenne Twister MT19937 (Matsumoto &amp; Nishimura 1998) with its standard initialisation from a 32-bit seed:
/// the engine of libtorch's CPU generator.
/// </summary>
internal sealed class Mt19937
{
    private const int N = 624;
    private const int M = 397;
    private const uint MatrixA = 0x9908B0DFu;
    private const uint UpperMask = 0x80000000u;
    private const uint LowerMask = 0x7FFFFFFFu;
    private readonly uint[] state = new uint[N];
    private int index;

    public Mt19937(uint seed)
    {
        state[0] = seed;
        for (int i = 1; i < N; i++)
        {
            state[i] = unchecked((1812433253u * (state[i - 1] ^ (state[i - 1] >> 30))) + (uint)i);
        }

        index = N;
    }

    /// <summary>The next 32 random bits.</summary>
    public uint Next()
    {
        if (index >= N)
        {
            Twist();
        }

        uint y = state[index++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C5680u;
        y ^= (y << 15) & 0xEFC60000u;
        y ^= y >> 18;
        return y;
    }

    private void Twist()
    {
        for (int i = 0; i < N; i++)
        {
            uint y = (state[i] & UpperMask) | (state[(i + 1) % N] & LowerMask);
            uint next = state[(i + M) % N] ^ (y >> 1);
            state[i] = (y & 1) != 0 ? next ^ MatrixA : next;
        }

        index = 0;
    }
}
