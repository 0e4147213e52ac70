using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace Microsoft.ML.Diffusion.Analyzers;

/// <summary>
/// MLDIFF100: a TorchSharp <c>Scalar</c> made for one call and held by nothing.
/// </summary>
/// <remarks>
/// TorchSharp 0.107's <c>Scalar</c> owns a native <c>c10::Scalar</c> and frees it in its finalizer. A method such as
/// <c>Tensor.mul(Scalar)</c> reads <c>scalar.Handle</c> and then calls native code with the bare pointer; from that moment
/// the managed object is unreachable, so a garbage collection started by any other thread (a progress display, a second
/// request in a server, the test host) can run the finalizer and free the scalar while libtorch is still reading it. The
/// native side then sees a scalar of no known type ("Expected false to be true ... toDouble", "INTERNAL ASSERT FAILED at
/// c10/core/Scalar.h") or, worse, a wrong value. Such temporaries come from
/// <list type="bullet">
/// <item>our call sites: an implicit conversion (<c>x * 0.5</c> through <c>Scalar</c>, <c>t.clamp_min(1e-12)</c>,
/// <c>full(n, 3)</c>), a <c>ToScalar()</c> passed straight on, TorchSharp's operators with a number operand (which convert
/// inside TorchSharp);</item>
/// <item>TorchSharp members that make one themselves: <c>add</c>/<c>add_</c> without an alpha (and so <c>a + b</c>), which
/// pass a literal 1, and <c>square()</c>, which passes a literal 2.</item>
/// </list>
/// A scalar in a <c>using</c> local (<c>using Scalar half = 0.5.ToScalar();</c>) or a long-lived field stays reachable
/// until the call has returned; <c>a.add(b, one)</c> with a held <c>one</c>, and <c>x.mul(x)</c>, avoid the inner ones.
/// </remarks>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class TemporaryScalarAnalyzer : DiagnosticAnalyzer
{
    private const string ScalarType = "TorchSharp.Scalar";
    private const string TensorType = "TorchSharp.torch.Tensor";

    private static readonly DiagnosticDescriptor Rule = new(
        id: "MLDIFF100",
        title: "TorchSharp Scalar temporary",
        messageFormat: "A TorchSharp Scalar made from '{0}' for this call is held by nothing, so the finalizer thread may free it while libtorch reads it; hold it in a using local or a field (see eng/Analyzers/TemporaryScalarAnalyzer.cs)",
        category: "Reliability",
        defaultSeverity: DiagnosticSeverity.Warning,
        isEnabledByDefault: true);

    /// <inheritdoc/>
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(Rule);

    /// <inheritdoc/>
    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterOperationAction(AnalyzeConversion, OperationKind.Conversion);
        context.RegisterOperationAction(AnalyzeInvocation, OperationKind.Invocation);
        context.RegisterOperationAction(AnalyzeOperator, OperationKind.Binary, OperationKind.CompoundAssignment);
    }

    private static void AnalyzeConversion(OperationAnalysisContext context)
    {
        var conversion = (IConversionOperation)context.Operation;
        if (conversion.OperatorMethod is { } method && IsScalar(method.ContainingType) && IsScalar(conversion.Type) && !IsHeld(conversion))
        {
            Report(context, conversion.Operand.Syntax.ToString());
        }
    }

    private static void AnalyzeInvocation(OperationAnalysisContext context)
    {
        var invocation = (IInvocationOperation)context.Operation;
        IMethodSymbol method = invocation.TargetMethod;
        if (IsTensorMember(method) && MakesOwnTemporary(method))
        {
            Report(context, $"{method.Name}(…) inside TorchSharp");
        }
        else if (IsScalar(method.ReturnType) && method.Name.StartsWith("To", System.StringComparison.Ordinal)
            && method.ContainingType?.ToDisplayString() == "TorchSharp.ScalarExtensionMethods" && !IsHeld(invocation))
        {
            Report(context, invocation.Syntax.ToString());
        }
    }

    // TorchSharp's operators: `Tensor * double` converts the number inside TorchSharp; `a + b`, `a + scalar` and
    // `scalar - a` call the add overload without an alpha, which passes a literal 1.
    private static void AnalyzeOperator(OperationAnalysisContext context)
    {
        (IMethodSymbol? method, BinaryOperatorKind kind) = context.Operation switch
        {
            IBinaryOperation binary => (binary.OperatorMethod, binary.OperatorKind),
            ICompoundAssignmentOperation compound => (compound.OperatorMethod, compound.OperatorKind),
            _ => (null, BinaryOperatorKind.None),
        };
        if (method is null || !IsTensorMember(method))
        {
            return;
        }

        foreach (IParameterSymbol parameter in method.Parameters)
        {
            if (IsNumber(parameter.Type))
            {
                Report(context, $"the number operand of '{context.Operation.Syntax}'");
                return;
            }
        }

        // `scalar - tensor` is `-tensor + scalar` inside TorchSharp: the same add.
        if (kind == BinaryOperatorKind.Add || (kind == BinaryOperatorKind.Subtract && IsScalar(method.Parameters[0].Type)))
        {
            Report(context, $"the alpha of TorchSharp's add behind '{context.Operation.Syntax}'");
        }
    }

    private static bool MakesOwnTemporary(IMethodSymbol method) => method.Name switch
    {
        "add" or "add_" => method.Parameters.Length == 1,
        "square" or "celu" or "celu_" => method.Parameters.Length == 0,
        _ => false,
    };

    private static bool IsTensorMember(IMethodSymbol method) => method.ContainingType?.ToDisplayString() == TensorType;

    private static void Report(OperationAnalysisContext context, string what) =>
        context.ReportDiagnostic(Diagnostic.Create(Rule, context.Operation.Syntax.GetLocation(), what));

    private static bool IsScalar(ITypeSymbol? type) => type?.ToDisplayString() == ScalarType;

    private static bool IsNumber(ITypeSymbol? type) => type?.SpecialType is SpecialType.System_Double or SpecialType.System_Single
        or SpecialType.System_Int32 or SpecialType.System_Int64 or SpecialType.System_Int16 or SpecialType.System_Byte
        or SpecialType.System_SByte or SpecialType.System_Boolean;

    // A scalar is held when something keeps it reachable until after the call: a using local (disposed, so alive, at the
    // end of its scope) or a field or property. A plain local is not enough: optimised code ends a local's life at its
    // last read, which is the read of the handle inside TorchSharp. Anything else (an argument, an operator's operand, a
    // returned temporary) leaves the scalar to the garbage collector.
    private static bool IsHeld(IOperation operation)
    {
        IOperation? parent = operation.Parent;
        while (parent is IConversionOperation or IParenthesizedOperation)
        {
            parent = parent.Parent;
        }

        switch (parent)
        {
            case IFieldInitializerOperation or IPropertyInitializerOperation:
                return true;
            case ISimpleAssignmentOperation assignment:
                return assignment.Target is IFieldReferenceOperation or IPropertyReferenceOperation;
            case IVariableInitializerOperation:
                for (IOperation? up = parent.Parent; up is not null and not IBlockOperation; up = up.Parent)
                {
                    if (up is IUsingDeclarationOperation or IUsingOperation)
                    {
                        return true;
                    }
                }

                return false;
            default:
                return false;
        }
    }
}
