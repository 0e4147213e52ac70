using Microsoft.VisualStudio.TestTools.UnitTesting;

// TorchSharp's dispose-scope statistics are per thread and libtorch already uses both cores: run tests one at a time.
[assembly: DoNotParallelize]
