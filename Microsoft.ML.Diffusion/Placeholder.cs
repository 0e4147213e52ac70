namespace Microsoft.ML.Diffusion;
/// <summary>x</summary>
public static class Placeholder { }
