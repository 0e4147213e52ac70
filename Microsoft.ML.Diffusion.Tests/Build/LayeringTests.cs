using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Microsoft.ML.Diffusion.Tests.Devices;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests.Build;

/// <summary>
/// The library's folders are its layers (README, "Layout"): each folder may name types of the folders it lists below and
/// of no other, the core names no ML.NET type, and a folder's namespace is its path. Checked at the source, as
/// <see cref="DeviceGuardTests"/> checks device use: every type the library declares is attributed to its folder, and
/// every identifier, qualified name, <c>using</c> and doc-comment <c>cref</c> of a file is looked up in that table.
/// </summary>
[TestClass]
public sealed class LayeringTests
{
    /// <summary>Each layer and the layers it may use. Anything not listed is above it or beside it, and off limits.</summary>
    internal static readonly IReadOnlyDictionary<string, string[]> Allowed = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["Core/Runtime"] = Array.Empty<string>(),
        ["Core/IO"] = Array.Empty<string>(),
        ["Core/Schedules"] = Array.Empty<string>(),
        ["Core/Networks"] = new[] { "Core/Runtime" },
        ["Core/Diffusion"] = new[] { "Core/Runtime", "Core/Schedules", "Core/Networks" },
        ["Core/Sampling"] = new[] { "Core/Runtime", "Core/Schedules", "Core/Networks", "Core/Diffusion" },
        ["Core/Distributed"] = new[] { "Core/Runtime" },
        ["Core/Training"] = new[] { "Core/Runtime", "Core/IO", "Core/Schedules", "Core/Networks", "Core/Diffusion", "Core/Distributed" },
        ["Export"] = new[] { "Core/Runtime", "Core/IO", "Core/Schedules", "Core/Networks", "Core/Diffusion", "Core/Sampling" },
        ["MLNet"] = new[] { "Export", "Core/Runtime", "Core/IO", "Core/Schedules", "Core/Networks", "Core/Diffusion", "Core/Sampling", "Core/Training", "Core/Distributed" },
        ["Import"] = new[] { "MLNet", "Core/Runtime", "Core/IO", "Core/Schedules", "Core/Networks", "Core/Diffusion", "Core/Sampling", "Core/Training" },
        ["Tools/Pictures"] = new[] { "MLNet", "Core/Runtime", "Core/Schedules", "Core/Sampling", "Core/Training" },
        // The deploy-only package (its own project, no TorchSharp): it names nothing of the library's.
        ["Onnx"] = Array.Empty<string>(),
        ["Tools/Evaluation"] = new[] { "MLNet", "Tools/Pictures", "Core/Runtime", "Core/IO", "Core/Schedules", "Core/Networks", "Core/Diffusion", "Core/Sampling", "Core/Training" },
    };

    private static readonly Regex Declaration = new(
        @"^(?:public |internal )?(?:(?:sealed|static|abstract|partial|readonly) )*(?:record struct|class|struct|record|enum|interface) (\w+)", RegexOptions.Multiline);

    private static readonly Regex Cref = new(@"cref=""([^""]*)""");

    [TestMethod]
    public void EveryFolderIsALayerAndItsNamespaceSaysSo()
    {
        var files = LibraryFiles();
        var unknown = files.Where(f => f.Layer is null || !Allowed.ContainsKey(f.Layer)).Select(f => f.Path).ToList();
        Assert.AreEqual(0, unknown.Count, "Files outside the layers of LayeringTests.Allowed:\n" + string.Join("\n", unknown));
        var wrong = files
            .Where(f => f.Namespace is not null && f.Namespace != ExpectedNamespace(f.Layer!))
            .Select(f => $"{f.Path}: namespace {f.Namespace}, expected {ExpectedNamespace(f.Layer!)}")
            .ToList();
        Assert.AreEqual(0, wrong.Count, "Namespaces that do not say their layer:\n" + string.Join("\n", wrong));
    }

    [TestMethod]
    public void NoLayerNamesALayerAboveOrBesideIt()
    {
        var offenders = Violations(LibraryFiles());
        Assert.AreEqual(0, offenders.Count, "Arrows that point up or sideways:\n" + string.Join("\n", offenders));
    }

    [TestMethod]
    public void TheCoreNamesNoMLNetType()
    {
        var offenders = new List<string>();
        foreach (var file in LibraryFiles().Where(f => f.Layer!.StartsWith("Core/", StringComparison.Ordinal)))
        {
            // Microsoft.ML.Diffusion.Core.* is the core itself; any other Microsoft.ML namespace is ML.NET's or a layer above.
            foreach (Match m in Regex.Matches(file.Code, @"\bMicrosoft\.ML(?!\.Diffusion\.Core\b)[\w.]*"))
            {
                offenders.Add($"{file.Path}: {m.Value}");
            }
        }

        Assert.AreEqual(0, offenders.Count, "ML.NET (or a layer above the core) named in the core:\n" + string.Join("\n", offenders.Distinct()));
    }

    [TestMethod]
    public void TheCheckFindsAnArrowThatPointsUp()
    {
        // The scan itself must see a violation: a core file that names the ML.NET sampler, in each form a reference takes.
        var files = LibraryFiles().ToList();
        foreach (string code in new[]
        {
            "namespace Microsoft.ML.Diffusion.Core.Schedules;\ninternal static class Probe { public static object? Get() => (DiffusionSampler?)null; }\n",
            "using Microsoft.ML.Diffusion;\nnamespace Microsoft.ML.Diffusion.Core.Schedules;\ninternal static class Probe { }\n",
            "namespace Microsoft.ML.Diffusion.Core.Schedules;\n/// <summary>See <see cref=\"Microsoft.ML.Diffusion.Core.Sampling.DdimScheduler\"/>.</summary>\ninternal static class Probe { }\n",
        })
        {
            var probe = SourceFile.Parse("Core/Schedules/Probe.cs", "Core/Schedules", code);
            var found = Violations(files.Append(probe)).Where(v => v.StartsWith("Core/Schedules/Probe.cs", StringComparison.Ordinal)).ToList();
            Assert.AreNotEqual(0, found.Count, "The scan missed an upward reference in:\n" + code);
        }
    }

    internal static string ExpectedNamespace(string layer) =>
        layer == "MLNet" ? "Microsoft.ML.Diffusion" : "Microsoft.ML.Diffusion." + layer.Replace('/', '.');

    private static List<string> Violations(IEnumerable<SourceFile> files)
    {
        var all = files.ToList();
        var owner = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in all)
        {
            foreach (Match m in Declaration.Matches(file.Code))
            {
                owner.TryAdd(m.Groups[1].Value, file.Layer!);
            }
        }

        var namespaces = Allowed.Keys.ToDictionary(ExpectedNamespace, layer => layer, StringComparer.Ordinal);
        var offenders = new List<string>();
        foreach (var file in all)
        {
            var allowed = new HashSet<string>(Allowed.TryGetValue(file.Layer!, out var list) ? list : Array.Empty<string>(), StringComparer.Ordinal) { file.Layer! };

            // Type names used unqualified (a member access such as x.Name is not a type reference).
            foreach (Match m in Regex.Matches(file.Code, @"(?<![\w.])[A-Z]\w*"))
            {
                if (owner.TryGetValue(m.Value, out var layer) && !allowed.Contains(layer))
                {
                    offenders.Add($"{file.Path}: {m.Value} ({layer})");
                }
            }

            // Namespaces named in using directives, qualified names and doc-comment references: the longest layer namespace
            // that prefixes the name; under the root namespace (MLNet), only a name whose next part is one of its types.
            foreach (Match m in Regex.Matches(file.Code + "\n" + string.Join("\n", file.Crefs), @"\bMicrosoft\.ML\.Diffusion(?:\.\w+)*"))
            {
                string name = m.Value;
                string hit = namespaces.Keys.Where(n => name == n || name.StartsWith(n + ".", StringComparison.Ordinal)).OrderByDescending(n => n.Length).First();
                string layer = namespaces[hit];
                if (layer == "MLNet" && name != hit && !(owner.TryGetValue(name[(hit.Length + 1)..].Split('.')[0], out var root) && root == "MLNet"))
                {
                    continue;
                }

                if (!allowed.Contains(layer))
                {
                    offenders.Add($"{file.Path}: {name} ({layer})");
                }
            }

            foreach (string cref in file.Crefs)
            {
                foreach (Match m in Regex.Matches(cref, @"(?<![\w])[A-Z]\w*"))
                {
                    if (owner.TryGetValue(m.Value, out var layer) && !allowed.Contains(layer))
                    {
                        offenders.Add($"{file.Path}: cref {cref} ({layer})");
                    }
                }
            }
        }

        return offenders.Distinct().ToList();
    }

    private static List<SourceFile> LibraryFiles() =>
        ProjectFiles("Microsoft.ML.Diffusion", string.Empty).Concat(ProjectFiles("Microsoft.ML.Diffusion.Tools", "Tools/"))
            .Concat(ProjectFiles("Microsoft.ML.Diffusion.Onnx", "Onnx/")).ToList();

    /// <summary>The sources of one project; a file's layer is its folder, under <paramref name="prefix"/>.</summary>
    private static IEnumerable<SourceFile> ProjectFiles(string project, string prefix)
    {
        string library = Path.Combine(DeviceGuardTests.RepositoryRoot(), project);
        string obj = $"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", bin = $"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}";
        return Directory.EnumerateFiles(library, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains(obj, StringComparison.Ordinal) && !f.Contains(bin, StringComparison.Ordinal))
            .Where(f => Path.GetFileName(f) != "IgnoresAccessChecksToAttribute.cs") // the runtime's own attribute, declared in its namespace
            .Select(f =>
            {
                string relative = prefix + Path.GetRelativePath(library, f).Replace(Path.DirectorySeparatorChar, '/');
                string folder = Path.GetDirectoryName(relative)!.Replace(Path.DirectorySeparatorChar, '/');
                return SourceFile.Parse(relative, folder.Length == 0 ? null : folder, File.ReadAllText(f));
            })
            .OrderBy(f => f.Path, StringComparer.Ordinal);
    }

    private sealed record SourceFile(string Path, string? Layer, string? Namespace, string Code, IReadOnlyList<string> Crefs)
    {
        public static SourceFile Parse(string path, string? layer, string text)
        {
            var crefs = Cref.Matches(text).Select(m => m.Groups[1].Value).ToList();
            // Code without comments and string literals, so that words in prose and messages are not taken for references.
            string code = Regex.Replace(text, @"//.*", string.Empty);
            code = Regex.Replace(code, @"/\*.*?\*/", string.Empty, RegexOptions.Singleline);
            code = Regex.Replace(code, @"@""(?:""""|[^""])*""|""(?:\\.|[^""\\\n])*""|'(?:\\.|[^'\\\n])'", "\"\"");
            string? ns = Regex.Match(code, @"^namespace ([\w.]+);", RegexOptions.Multiline) is { Success: true } m ? m.Groups[1].Value : null;
            return new SourceFile(path, layer, ns, code, crefs);
        }
    }
}
