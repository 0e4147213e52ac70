using System;
using System.IO;
using System.Reflection;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion;

/// <summary>
/// The internal members of ML.NET (Microsoft.ML.Core) that saving and loading a transformer in an ordinary model file
/// needs, resolved by reflection on first use. They have been stable since ML.NET 1.0 (CI runs the model-file tests on
/// 5.0.1 and 6.0.0), and the package caps Microsoft.ML below 7.0; if one is missing all the same, every use throws one <see cref="MissingMemberException"/>
/// that names the member, the ML.NET version found and the versions this build supports (never a bare
/// <see cref="TypeInitializationException"/>).
/// </summary>
internal static class MLNetInternals
{
    private const BindingFlags Instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;
    private static readonly Lazy<Members> Resolved = new(() => Resolve(FindType), System.Threading.LazyThreadSafetyMode.ExecutionAndPublication);

    private static MethodInfo SaveCheckAtModel => Resolved.Value.SaveCheckAtModel;

    private static MethodInfo SaveSetVersionInfo => Resolved.Value.SaveSetVersionInfo;

    private static FieldInfo SaveWriter => Resolved.Value.SaveWriter;

    private static MethodInfo SaveBinaryStreamMethod => Resolved.Value.SaveBinaryStreamMethod;

    private static PropertyInfo SaveInRepository => Resolved.Value.SaveInRepository;

    private static ConstructorInfo VersionInfoConstructor => Resolved.Value.VersionInfoConstructor;

    private static FieldInfo LoadReader => Resolved.Value.LoadReader;

    private static MethodInfo LoadCheckAtModel => Resolved.Value.LoadCheckAtModel;

    private static MethodInfo LoadTryLoadBinaryStream => Resolved.Value.LoadTryLoadBinaryStream;

    private static ConstructorInfo SchemaShapeColumnConstructor => Resolved.Value.SchemaShapeColumnConstructor;

    private static Type? FindType(string name) => typeof(ModelSaveContext).Assembly.GetType(name) ?? typeof(SchemaShape).Assembly.GetType(name);

    /// <summary>
    /// Finds every member this class needs; <paramref name="coreType"/> looks a type up by its full name in Microsoft.ML.Core
    /// (a parameter so that a test can stand in for an ML.NET that lacks one).
    /// </summary>
    /// <exception cref="MissingMemberException">A type or member is missing; the message names it and the ML.NET version.</exception>
    internal static Members Resolve(Func<string, Type?> coreType)
    {
        Assembly core = typeof(ModelSaveContext).Assembly;
        string version = core.GetName().Version?.ToString() ?? "unknown";
        string diffusion = typeof(MLNetInternals).Assembly.GetName().Version?.ToString() ?? "unknown";
        T Need<T>(T? member, string name)
            where T : class => member ?? throw new MissingMemberException(
                $"Microsoft.ML.Diffusion {diffusion} cannot save or load model files with this ML.NET: it needs the internal ML.NET member {name}, "
                + $"which Microsoft.ML.Core {version} does not have. This build supports ML.NET 5.x and 6.x (its package asks for Microsoft.ML [5.0.1, 7.0.0)); "
                + "reference an ML.NET 5 or 6 release, or a Microsoft.ML.Diffusion release built for your ML.NET.");

        Type save = Need(coreType("Microsoft.ML.ModelSaveContext"), "Microsoft.ML.ModelSaveContext");
        Type load = Need(coreType("Microsoft.ML.ModelLoadContext"), "Microsoft.ML.ModelLoadContext");
        Type versionInfo = Need(coreType("Microsoft.ML.VersionInfo"), "Microsoft.ML.VersionInfo");
        Type column = Need(coreType("Microsoft.ML.SchemaShape+Column"), "Microsoft.ML.SchemaShape.Column");
        return new Members
        {
            SaveCheckAtModel = Need(save.GetMethod("CheckAtModel", Instance, Type.EmptyTypes), "ModelSaveContext.CheckAtModel()"),
            SaveSetVersionInfo = Need(save.GetMethod("SetVersionInfo", Instance, new[] { versionInfo }), "ModelSaveContext.SetVersionInfo(VersionInfo)"),
            SaveWriter = Need(save.GetField("Writer", Instance), "ModelSaveContext.Writer"),
            SaveBinaryStreamMethod = Need(save.GetMethod("SaveBinaryStream", Instance, new[] { typeof(string), typeof(Action<BinaryWriter>) }), "ModelSaveContext.SaveBinaryStream"),
            SaveInRepository = Need(save.GetProperty("InRepository", Instance), "ModelSaveContext.InRepository"),
            VersionInfoConstructor = Need(
                versionInfo.GetConstructor(Instance, new[] { typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string) }),
                "VersionInfo(string, uint, uint, uint, string, string, string)"),
            LoadReader = Need(load.GetField("Reader", Instance), "ModelLoadContext.Reader"),
            LoadCheckAtModel = Need(load.GetMethod("CheckAtModel", Instance, new[] { versionInfo }), "ModelLoadContext.CheckAtModel(VersionInfo)"),
            LoadTryLoadBinaryStream = Need(load.GetMethod("TryLoadBinaryStream", Instance, new[] { typeof(string), typeof(Action<BinaryReader>) }), "ModelLoadContext.TryLoadBinaryStream"),
            SchemaShapeColumnConstructor = Need(
                column.GetConstructor(Instance, new[] { typeof(string), typeof(SchemaShape.Column.VectorKind), typeof(DataViewType), typeof(bool), typeof(SchemaShape) }),
                "SchemaShape.Column(string, VectorKind, DataViewType, bool, SchemaShape)"),
        };
    }

    /// <summary>Creates ML.NET's version record of a model entry.</summary>
    public static object VersionInfo(string modelSignature, uint version, string loaderSignature, string loaderAssemblyName) =>
        VersionInfoConstructor.Invoke(new object?[] { modelSignature, version, version, version, loaderAssemblyName, loaderSignature, null });

    public static void BeginSave(ModelSaveContext ctx, object versionInfo)
    {
        Invoke(SaveCheckAtModel, ctx);
        Invoke(SaveSetVersionInfo, ctx, versionInfo);
    }

    public static BinaryWriter Writer(ModelSaveContext ctx) => (BinaryWriter)SaveWriter.GetValue(ctx)!;

    public static bool InRepository(ModelSaveContext ctx) => (bool)SaveInRepository.GetValue(ctx)!;

    public static void SaveBinaryStream(ModelSaveContext ctx, string name, Action<BinaryWriter> write) => Invoke(SaveBinaryStreamMethod, ctx, name, write);

    public static void BeginLoad(object ctx, object versionInfo) => Invoke(LoadCheckAtModel, ctx, versionInfo);

    public static BinaryReader Reader(object ctx) => (BinaryReader)LoadReader.GetValue(ctx)!;

    public static bool TryLoadBinaryStream(object ctx, string name, Action<BinaryReader> read) => (bool)Invoke(LoadTryLoadBinaryStream, ctx, name, read)!;

    /// <summary>A scalar or vector column of a <see cref="SchemaShape"/> (its constructor is internal).</summary>
    public static SchemaShape.Column Column(string name, SchemaShape.Column.VectorKind kind, DataViewType itemType) =>
        (SchemaShape.Column)SchemaShapeColumnConstructor.Invoke(new object?[] { name, kind, itemType, false, null });

    private static object? Invoke(MethodInfo method, object target, params object[] arguments)
    {
        try
        {
            return method.Invoke(target, arguments);
        }
        catch (TargetInvocationException ex) when (ex.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
            throw;
        }
    }

    /// <summary>The resolved members.</summary>
    internal sealed class Members
    {
        public required MethodInfo SaveCheckAtModel { get; init; }

        public required MethodInfo SaveSetVersionInfo { get; init; }

        public required FieldInfo SaveWriter { get; init; }

        public required MethodInfo SaveBinaryStreamMethod { get; init; }

        public required PropertyInfo SaveInRepository { get; init; }

        public required ConstructorInfo VersionInfoConstructor { get; init; }

        public required FieldInfo LoadReader { get; init; }

        public required MethodInfo LoadCheckAtModel { get; init; }

        public required MethodInfo LoadTryLoadBinaryStream { get; init; }

        public required ConstructorInfo SchemaShapeColumnConstructor { get; init; }
    }
}
