using System.Runtime.CompilerServices;

// The runtime lets this assembly use Microsoft.ML.Core's internal LoadableClassAttribute (added after compilation, see
// eng/ModelLoaderWeaving.targets); without it the attribute is dropped silently and ML.NET finds no loader.
[assembly: IgnoresAccessChecksTo("Microsoft.ML.Core")]

namespace System.Runtime.CompilerServices;

/// <summary>Honoured by CoreCLR by name: lets this assembly access the named assembly's non-public types.</summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
internal sealed class IgnoresAccessChecksToAttribute : Attribute
{
    public IgnoresAccessChecksToAttribute(string assemblyName)
    {
        AssemblyName = assemblyName;
    }

    public string AssemblyName { get; }
}
