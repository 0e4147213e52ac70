using System;
using System.IO;
using System.Reflection;
using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.Persistence;

/// <summary>
/// The internal members of ML.NET (Microsoft.ML.Core) that saving and loading a transformer in an ordinary model file
/// needs, resolved once by reflection. They have been stable since ML.NET 1.0; if one is missing, the static constructor
/// fails with one message naming it and the ML.NET version.
/// </summary>
internal static class MLNetInternals
{
    private const BindingFlags Instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;
    private static readonly MethodInfo SaveCheckAtModel;
    private static readonly MethodInfo SaveSetVersionInfo;
    private static readonly FieldInfo SaveWriter;
    private static readonly MethodInfo SaveBinaryStreamMethod;
    private static readonly PropertyInfo SaveInRepository;
    private static readonly ConstructorInfo VersionInfoConstructor;
    private static readonly FieldInfo LoadReader;
    private static readonly MethodInfo LoadCheckAtModel;
    private static readonly MethodInfo LoadTryLoadBinaryStream;
    private static readonly ConstructorInfo SchemaShapeColumnConstructor;

    static MLNetInternals()
    {
        Assembly core = typeof(ModelSaveContext).Assembly;
        string version = core.GetName().Version?.ToString() ?? "unknown";
        T Need<T>(T? member, string name)
            where T : class => member ?? throw new MissingMemberException(
                $"Microsoft.ML.Diffusion needs the internal ML.NET member {name}, which Microsoft.ML.Core {version} does not have. "
                + "This build of Microsoft.ML.Diffusion supports ML.NET 5.x.");

        Type save = typeof(ModelSaveContext);
        Type load = Need(core.GetType("Microsoft.ML.ModelLoadContext"), "Microsoft.ML.ModelLoadContext");
        Type versionInfo = Need(core.GetType("Microsoft.ML.VersionInfo"), "Microsoft.ML.VersionInfo");
        SaveCheckAtModel = Need(save.GetMethod("CheckAtModel", Instance, Type.EmptyTypes), "ModelSaveContext.CheckAtModel()");
        SaveSetVersionInfo = Need(save.GetMethod("SetVersionInfo", Instance, new[] { versionInfo }), "ModelSaveContext.SetVersionInfo(VersionInfo)");
        SaveWriter = Need(save.GetField("Writer", Instance), "ModelSaveContext.Writer");
        SaveBinaryStreamMethod = Need(save.GetMethod("SaveBinaryStream", Instance, new[] { typeof(string), typeof(Action<BinaryWriter>) }), "ModelSaveContext.SaveBinaryStream");
        SaveInRepository = Need(save.GetProperty("InRepository", Instance), "ModelSaveContext.InRepository");
        VersionInfoConstructor = Need(
            versionInfo.GetConstructor(Instance, new[] { typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string) }),
            "VersionInfo(string, uint, uint, uint, string, string, string)");
        LoadReader = Need(load.GetField("Reader", Instance), "ModelLoadContext.Reader");
        LoadCheckAtModel = Need(load.GetMethod("CheckAtModel", Instance, new[] { versionInfo }), "ModelLoadContext.CheckAtModel(VersionInfo)");
        LoadTryLoadBinaryStream = Need(load.GetMethod("TryLoadBinaryStream", Instance, new[] { typeof(string), typeof(Action<BinaryReader>) }), "ModelLoadContext.TryLoadBinaryStream");
        SchemaShapeColumnConstructor = Need(
            typeof(SchemaShape.Column).GetConstructor(Instance, new[] { typeof(string), typeof(SchemaShape.Column.VectorKind), typeof(DataViewType), typeof(bool), typeof(SchemaShape) }),
            "SchemaShape.Column(string, VectorKind, DataViewType, bool, SchemaShape)");
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
}
