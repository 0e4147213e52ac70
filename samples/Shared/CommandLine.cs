using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;

namespace DiffusionSamples;

/// <summary>
/// The command-line parser the sample programs share: each option is declared once, with its value's meaning, and the
/// usage text is made from those declarations, so the two never disagree. <c>--help</c> prints the usage and exits 0; a
/// bad value names the option and what it expects ("--steps expects a positive integer; got 'abc'"); an unknown option is
/// named, with the nearest known one when it is a likely typo; both exit 2.
/// </summary>
internal sealed class CommandLine
{
    private const int HelpColumn = 28;
    private readonly string synopsis;
    private readonly string description;
    private readonly List<Option> options = new();
    private Positional? positional;

    /// <summary>Creates a parser.</summary>
    /// <param name="synopsis">How to call the program, e.g. "dotnet run -c Release --project samples/X --".</param>
    /// <param name="description">What the program does, in a sentence or two.</param>
    public CommandLine(string synopsis, string description)
    {
        this.synopsis = synopsis;
        this.description = description;
    }

    /// <summary>Gets the usage text: synopsis, description and one line per option.</summary>
    public string Usage
    {
        get
        {
            var text = new StringBuilder();
            text.Append("Usage: ").Append(synopsis);
            if (positional is not null)
            {
                text.Append(' ').Append(positional.Name);
            }

            text.Append(" [options]\n\n").Append(description).Append('\n');
            if (positional is not null)
            {
                text.Append('\n').Append(Line("  " + positional.Name, positional.Help));
            }

            text.Append("\nOptions:\n");
            foreach (var option in options)
            {
                text.Append(Line($"  {option.Name}{(option.ValueName is null ? string.Empty : " " + option.ValueName)}", option.Help));
            }

            text.Append(Line("  -h, --help", "print this help and exit"));
            return text.ToString();
        }
    }

    /// <summary>Declares the one required positional argument.</summary>
    public CommandLine Argument(string name, string help, Action<string> set)
    {
        positional = new Positional(name, help, set);
        return this;
    }

    /// <summary>Declares an option without a value.</summary>
    public CommandLine Flag(string name, string help, Action set) => Add(new Option(name, null, help, null, _ => set()));

    /// <summary>Declares an option whose value is any non-empty text.</summary>
    public CommandLine Text(string name, string valueName, string help, Action<string> set) =>
        Add(new Option(name, valueName, help, "a value", value => set(value.Length > 0 ? value : throw new FormatException())));

    /// <summary>Declares an integer option with a lower bound (1: "a positive integer").</summary>
    public CommandLine Integer(string name, string valueName, string help, Action<int> set, int min = 1)
    {
        string expects = min switch
        {
            1 => "a positive integer",
            0 => "a non-negative integer",
            _ => $"an integer of at least {min}",
        };
        return Add(new Option(name, valueName, help, expects, value =>
        {
            int parsed = int.Parse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            set(parsed >= min ? parsed : throw new FormatException());
        }));
    }

    /// <summary>Declares a real-number option that must be positive (or, with <paramref name="allowZero"/>, non-negative).</summary>
    public CommandLine Number(string name, string valueName, string help, Action<double> set, bool allowZero = false) =>
        Add(new Option(name, valueName, help, allowZero ? "a non-negative number" : "a positive number", value =>
        {
            double parsed = double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture);
            set(double.IsFinite(parsed) && (parsed > 0 || (allowZero && parsed == 0)) ? parsed : throw new FormatException());
        }));

    /// <summary>Declares an option whose value is one of a few words (compared without regard to case).</summary>
    public CommandLine Choice(string name, string help, IReadOnlyList<string> choices, Action<string> set) =>
        Add(new Option(name, string.Join('|', choices), help, "one of " + string.Join(", ", choices), value =>
        {
            string lower = value.ToLowerInvariant();
            set(choices.Contains(lower) ? lower : throw new FormatException());
        }));

    /// <summary>Declares an option whose value is a comma-separated list of positive integers, e.g. "1,2,4".</summary>
    public CommandLine IntegerList(string name, string valueName, string help, Action<int[]> set) =>
        Add(new Option(name, valueName, help, "a comma-separated list of positive integers, e.g. 1,2,4", value =>
        {
            int[] parsed = value.Split(',').Select(v => int.Parse(v.Trim(), NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
            set(parsed.Length > 0 && parsed.All(v => v > 0) ? parsed : throw new FormatException());
        }));

    /// <summary>
    /// Parses the arguments into the declared setters. Returns null when the program should run; otherwise prints the
    /// usage (--help) or the error to <paramref name="console"/> and returns the exit code: 0 for help, 2 for an error.
    /// </summary>
    public int? Parse(IReadOnlyList<string> args, TextWriter console)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(console);
        if (args.Any(a => a is "--help" or "-h" or "-?"))
        {
            console.WriteLine(Usage);
            return 0;
        }

        try
        {
            bool positionalSeen = false;
            for (int i = 0; i < args.Count; i++)
            {
                string arg = args[i];
                if (!arg.StartsWith('-') || arg == "-")
                {
                    if (positional is null || positionalSeen)
                    {
                        throw new UsageException($"Unexpected argument '{arg}'.");
                    }

                    positional.Set(arg);
                    positionalSeen = true;
                    continue;
                }

                int equals = arg.IndexOf('=', StringComparison.Ordinal);
                string name = equals > 0 ? arg[..equals] : arg;
                var option = options.FirstOrDefault(o => o.Name == name) ?? throw new UsageException(Unknown(name));
                if (option.Expects is null)
                {
                    if (equals > 0)
                    {
                        throw new UsageException($"{name} takes no value; got '{arg[(equals + 1)..]}'.");
                    }

                    option.Set(string.Empty);
                    continue;
                }

                string? value = equals > 0 ? arg[(equals + 1)..] : i + 1 < args.Count ? args[++i] : null;
                if (value is null)
                {
                    throw new UsageException($"{name} expects {option.Expects}; got nothing.");
                }

                try
                {
                    option.Set(value);
                }
                catch (Exception ex) when (ex is FormatException or OverflowException)
                {
                    throw new UsageException($"{name} expects {option.Expects}; got '{value}'.");
                }
            }

            if (positional is not null && !positionalSeen)
            {
                throw new UsageException($"Missing {positional.Name}: {positional.Help}.");
            }
        }
        catch (UsageException ex)
        {
            console.WriteLine(ex.Message);
            console.WriteLine("Run with --help to see the options.");
            return 2;
        }

        return null;
    }

    private static string Line(string left, string help) =>
        (left.Length < HelpColumn ? left.PadRight(HelpColumn) : left + "\n" + new string(' ', HelpColumn)) + help + "\n";

    private static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }

        return row[b.Length];
    }

    private string Unknown(string name)
    {
        var nearest = options.Select(o => (o.Name, Distance: Distance(name, o.Name))).OrderBy(p => p.Distance).FirstOrDefault();
        return nearest.Name is not null && nearest.Distance <= 2
            ? $"Unknown option '{name}' (did you mean {nearest.Name}?)."
            : $"Unknown option '{name}'.";
    }

    private CommandLine Add(Option option)
    {
        if (!option.Name.StartsWith("--", StringComparison.Ordinal) || options.Any(o => o.Name == option.Name))
        {
            throw new ArgumentException($"Option {option.Name} is malformed or declared twice.", nameof(option));
        }

        options.Add(option);
        return this;
    }

    private sealed record Option(string Name, string? ValueName, string Help, string? Expects, Action<string> Set);

    private sealed record Positional(string Name, string Help, Action<string> Set);

    private sealed class UsageException : Exception
    {
        public UsageException(string message)
            : base(message)
        {
        }
    }
}
