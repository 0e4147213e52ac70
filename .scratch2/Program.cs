using System; using System.Linq; using System.Reflection;
var asm = typeof(TorchSharp.torch).Assembly;
foreach (var t in asm.GetTypes())
 foreach (var m in t.GetMethods(BindingFlags.Public|BindingFlags.Static|BindingFlags.Instance|BindingFlags.DeclaredOnly|BindingFlags.NonPublic))
  if (m.GetParameters().Any(p => p.ParameterType.Name.Contains("MemoryFormat")) || m.Name.Contains("memory_format") || m.Name.Contains("mkldnn") || m.Name.Contains("foreach") || m.Name.Contains("fused") || m.Name.Contains("data_ptr") || m.Name.Contains("autocast"))
   Console.WriteLine($"{t.FullName}.{m.Name}({string.Join(",", m.GetParameters().Select(p=>p.ParameterType.Name+" "+p.Name))})");
