// Test helpers shared across the test folders (the library's own namespaces are named in each file).
global using Microsoft.ML.Diffusion.Tests.Core.Diffusion;
global using Microsoft.ML.Diffusion.Tests.Devices;
global using Microsoft.ML.Diffusion.Tests.MLNet;
global using Microsoft.ML.Diffusion.Tests.Tools.Pictures;
