using System.IO;

namespace Microsoft.ML.Diffusion.Core.IO;

/// <summary>
/// The unsigned LEB128 lengths TorchSharp writes in its own streams (<c>Module.save</c>, <c>Optimizer.save_state_dict</c>):
/// 7 bits per byte, low bits first, the high bit set on every byte but the last.
/// </summary>
internal static class Leb128
{
    public static long Read(BinaryReader reader)
    {
        long result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            long b = reader.ReadByte();
            result |= (b & 0x7f) << shift;
            if ((b & 0x80) == 0)
            {
                return result;
            }
        }

        throw new InvalidDataException("A length in the stream is malformed.");
    }

    public static void Write(BinaryWriter writer, long value)
    {
        do
        {
            byte b = (byte)(value & 0x7f);
            value >>= 7;
            writer.Write(value != 0 ? (byte)(b | 0x80) : b);
        }
        while (value != 0);
    }
}
