using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML.Diffusion;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Build;

[TestClass]
public sealed class PackagingTests
{
    // Packages whose licence is not open source (Microsoft's own terms) that test tooling tends to pull in.
    private static readonly string[] NotOpenSource = { "Microsoft.Testing.Extensions.CodeCoverage", "Microsoft.Testing.Extensions.Retry" };

    [TestMethod]
    public void TheTestProjectPullsNoPackageWithANonOpenSourceLicence()
    {
        string deps = Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.Diffusion.Tests.deps.json");
        using var document = JsonDocument.Parse(File.ReadAllText(deps));
        var libraries = document.RootElement.GetProperty("libraries").EnumerateObject().Select(p => p.Name.Split('/')[0]).ToArray();
        CollectionAssert.Contains(libraries, "MSTest.TestFramework", "the deps file lists the test packages");
        foreach (string package in NotOpenSource)
        {
            CollectionAssert.DoesNotContain(libraries, package, $"{package} is not open source");
        }
    }

    [TestMethod]
    public void TheMLNetInternalsResolveOnThisMLNet()
    {
        var members = MLNetInternals.Resolve(name => typeof(ModelSaveContext).Assembly.GetType(name) ?? typeof(SchemaShape).Assembly.GetType(name));
        Assert.AreEqual("CheckAtModel", members.SaveCheckAtModel.Name);
        Assert.AreEqual("TryLoadBinaryStream", members.LoadTryLoadBinaryStream.Name);
    }

    [TestMethod]
    public void AMissingMLNetInternalIsNamedWithTheMLNetVersion()
    {
        // An ML.NET whose ModelLoadContext was renamed, and one whose ModelSaveContext lost CheckAtModel.
        var noLoadContext = Assert.ThrowsExactly<MissingMemberException>(() => MLNetInternals.Resolve(
            name => name == "Microsoft.ML.ModelLoadContext" ? null : typeof(ModelSaveContext).Assembly.GetType(name) ?? typeof(SchemaShape).Assembly.GetType(name)));
        StringAssert.Contains(noLoadContext.Message, "Microsoft.ML.ModelLoadContext");
        StringAssert.Contains(noLoadContext.Message, "Microsoft.ML.Core " + typeof(ModelSaveContext).Assembly.GetName().Version);
        StringAssert.Contains(noLoadContext.Message, "ML.NET 5.x");

        var noCheckAtModel = Assert.ThrowsExactly<MissingMemberException>(() => MLNetInternals.Resolve(
            name => name == "Microsoft.ML.ModelSaveContext" ? typeof(object) : typeof(ModelSaveContext).Assembly.GetType(name) ?? typeof(SchemaShape).Assembly.GetType(name)));
        StringAssert.Contains(noCheckAtModel.Message, "ModelSaveContext.CheckAtModel()");
    }
}
