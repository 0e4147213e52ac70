using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using Microsoft.VisualStudio.TestTools.UnitTesting;

namespace Microsoft.ML.Diffusion.Tests;

/// <summary>
/// Runs this assembly's MSTest methods by reflection, for machines that have the .NET runtime but no SDK (the GPU machine
/// of docs/gpu/README.md): <c>dotnet Microsoft.ML.Diffusion.Tests.dll run-tests --category Device --row cuda</c>.
/// It honours [TestClass], [TestMethod], [DataRow], [TestCategory], [TestInitialize] and [TestCleanup] — what the tests it
/// is meant for use — and prints one line per test and a summary; the exit code is 1 when a test failed.
/// </summary>
internal static class DirectTestRunner
{
    public static int Run(string[] args, TextWriter output)
    {
        string? category = null, row = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--category" when i + 1 < args.Length: category = args[++i]; break;
                case "--row" when i + 1 < args.Length: row = args[++i]; break;
                default:
                    output.WriteLine($"run-tests: unknown argument '{args[i]}'; use --category C and --row R");
                    return 2;
            }
        }

        var counts = new Dictionary<string, int> { ["passed"] = 0, ["failed"] = 0, ["inconclusive"] = 0 };
        foreach (var type in typeof(DirectTestRunner).Assembly.GetTypes().Where(t => t.GetCustomAttribute<TestClassAttribute>() is not null).OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            var classCategories = type.GetCustomAttributes<TestCategoryAttribute>().SelectMany(c => c.TestCategories);
            foreach (var method in type.GetMethods().Where(m => m.GetCustomAttribute<TestMethodAttribute>() is not null))
            {
                var categories = classCategories.Concat(method.GetCustomAttributes<TestCategoryAttribute>().SelectMany(c => c.TestCategories));
                if (category is not null && !categories.Contains(category, StringComparer.Ordinal))
                {
                    continue;
                }

                var rows = method.GetCustomAttributes<DataRowAttribute>().Select(d => d.Data).ToList();
                if (rows.Count == 0)
                {
                    rows.Add(Array.Empty<object?>());
                }

                foreach (var data in rows.Where(d => row is null || (d.Length > 0 && string.Equals(d[0]?.ToString(), row, StringComparison.Ordinal))))
                {
                    string name = $"{type.Name}.{method.Name}({string.Join(", ", data)})";
                    var clock = Stopwatch.StartNew();
                    string outcome = RunOne(type, method, data, out string message);
                    counts[outcome]++;
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{outcome.ToUpperInvariant()} {name} ({clock.Elapsed.TotalSeconds:F1} s){(message.Length > 0 ? ": " + message : "")}"));
                }
            }
        }

        output.WriteLine($"{counts["passed"]} passed, {counts["failed"]} failed, {counts["inconclusive"]} inconclusive");
        return counts["failed"] > 0 ? 1 : 0;
    }

    private static string RunOne(Type type, MethodInfo method, object?[] data, out string message)
    {
        message = "";
        object instance = Activator.CreateInstance(type)!;
        try
        {
            Invoke(type, instance, typeof(TestInitializeAttribute));
            method.Invoke(instance, data.Length == 0 ? null : data);
            return "passed";
        }
        catch (TargetInvocationException ex) when (ex.InnerException is AssertInconclusiveException inconclusive)
        {
            message = inconclusive.Message;
            return "inconclusive";
        }
        catch (TargetInvocationException ex)
        {
            message = (ex.InnerException ?? ex).ToString().Replace('\n', ' ');
            return "failed";
        }
        finally
        {
            try
            {
                Invoke(type, instance, typeof(TestCleanupAttribute));
            }
            catch (TargetInvocationException ex)
            {
                message += " (cleanup failed: " + ex.InnerException?.Message + ")";
            }

            (instance as IDisposable)?.Dispose();
        }
    }

    private static void Invoke(Type type, object instance, Type attribute)
    {
        foreach (var m in type.GetMethods().Where(m => m.GetCustomAttribute(attribute) is not null))
        {
            m.Invoke(instance, null);
        }
    }
}
