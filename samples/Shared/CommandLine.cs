using System;
using System.Collections.Generic;
using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using System.IO;
using System.Linq;

namespace DiffusionSamples;

/// <summary>
/// The sample programs' command lines, declared on System.CommandLine: it tokenizes (<c>--x v</c>, <c>--x=v</c>,
/// <c>@response-files</c>), writes the help, answers shell completion (the <c>[suggest]</c> directive that
/// <c>dotnet-suggest</c> uses) and names unknown options with their likely spelling. What stays here is how a value is
/// read: each option's parser names the option and what it expects ("--minutes expects a positive number; got 'soon'"),
/// and every bad command line exits with 2, as the programs always have. Every number has a stated limit, said in the
/// message ("--steps expects a positive integer of at most 1000000000; got '99999999999999'"), and an option given twice
/// is refused ("--size is given twice ('8', then '16'): give it once"): a long run started from an ambiguous command line
/// would silently use one of the two values.
/// </summary>
internal sealed class CommandLine
{
    /// <summary>The exit code of a bad command line.</summary>
    public const int BadCommandLine = 2;

    private readonly RootCommand root;
    private readonly string synopsis;
    private readonly string description;
    private readonly List<Action<ParseResult>> binders = new();
    private readonly HashSet<string> flags = new();

    /// <summary>Creates a command line.</summary>
    /// <param name="synopsis">How to call the program, e.g. "dotnet run -c Release --project samples/X --".</param>
    /// <param name="description">What the program does, in a sentence or two.</param>
    public CommandLine(string synopsis, string description)
    {
        this.synopsis = synopsis;
        this.description = description;
        // The library's help names the executable ("FolderTrainer <IMAGES> [options]"); the description says how to run it
        // from the repository.
        root = new RootCommand(Describe(description, synopsis));
        root.SetAction(_ => 0);
    }

    /// <summary>Gets the usage text: what --help prints.</summary>
    public string Usage
    {
        get
        {
            using var text = new StringWriter();
            root.Parse(new[] { "--help" }).Invoke(new InvocationConfiguration { Output = text, Error = text });
            return text.ToString();
        }
    }

    /// <summary>Declares the one required positional argument.</summary>
    public CommandLine Argument(string name, string help, Action<string> set)
    {
        // Zero or one, so that a missing one is reported in the words below rather than as the command's.
        var argument = new Argument<string>(name) { Description = help, Arity = ArgumentArity.ZeroOrOne };
        root.Arguments.Add(argument);
        root.Validators.Add(command =>
        {
            if (command.GetResult(argument) is null || command.GetValue(argument) is null)
            {
                command.AddError($"Missing {name}: {help}.");
            }
        });
        binders.Add(result => set(result.GetValue(argument)!));
        root.Description = Describe(description, $"{synopsis} {name}");
        return this;
    }

    /// <summary>Declares an option without a value.</summary>
    public CommandLine Flag(string name, string help, Action set)
    {
        var option = new Option<bool>(name) { Description = help, Arity = ArgumentArity.Zero };
        root.Options.Add(option);
        flags.Add(name);
        binders.Add(result =>
        {
            if (Given(result, option))
            {
                set();
            }
        });
        return this;
    }

    /// <summary>Declares an option whose value is any non-empty text.</summary>
    public CommandLine Text(string name, string valueName, string help, Action<string> set) =>
        Add(name, valueName, help, "a value", value => value.Length > 0 ? value : throw new FormatException(), set);

    /// <summary>Declares an integer option with bounds (min 1: "a positive integer"); the message states the upper bound.</summary>
    public CommandLine Integer(string name, string valueName, string help, Action<int> set, int min = 1, int max = int.MaxValue)
    {
        string expects = min switch
        {
            1 => string.Create(CultureInfo.InvariantCulture, $"a positive integer of at most {max}"),
            0 => string.Create(CultureInfo.InvariantCulture, $"a non-negative integer of at most {max}"),
            _ => string.Create(CultureInfo.InvariantCulture, $"an integer in [{min}, {max}]"),
        };
        return Add(name, valueName, help, expects, value =>
        {
            // A value past int's range is out of range too (not "not an integer"): the message states the limit either way.
            long parsed = long.Parse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            return parsed >= min && parsed <= max ? (int)parsed : throw new FormatException();
        }, set);
    }

    /// <summary>Declares a real-number option that must be positive (or, with <paramref name="allowZero"/>, non-negative), and at most <paramref name="max"/>.</summary>
    public CommandLine Number(string name, string valueName, string help, Action<double> set, bool allowZero = false, double max = double.MaxValue) =>
        Add(name, valueName, help, (allowZero ? "a non-negative number" : "a positive number") + (max < double.MaxValue ? string.Create(CultureInfo.InvariantCulture, $" of at most {max}") : string.Empty), value =>
        {
            double parsed = double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture);
            return double.IsFinite(parsed) && (parsed > 0 || (allowZero && parsed == 0)) && parsed <= max ? parsed : throw new FormatException();
        }, set);

    /// <summary>Declares an option whose value is one of a few words (compared without regard to case; completed by the shell).</summary>
    public CommandLine Choice(string name, string help, IReadOnlyList<string> choices, Action<string> set)
    {
        var added = Add(name, string.Join('|', choices), help, "one of " + string.Join(", ", choices), value =>
        {
            string lower = value.ToLowerInvariant();
            return choices.Contains(lower) ? lower : throw new FormatException();
        }, set);
        ((Option<string>)root.Options.Single(o => o.Name == name)).CompletionSources.Add(choices.ToArray());
        return added;
    }

    /// <summary>Declares an option whose value is a comma-separated list of positive integers, e.g. "1,2,4", with bounds on each and on their count.</summary>
    public CommandLine IntegerList(string name, string valueName, string help, Action<int[]> set, int max = int.MaxValue, int maxCount = int.MaxValue) =>
        Add(name, valueName, help, string.Create(CultureInfo.InvariantCulture, $"a comma-separated list of at most {maxCount} positive integers of at most {max}, e.g. 1,2,4"), value =>
        {
            int[] parsed = value.Split(',').Select(v => int.Parse(v.Trim(), NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
            return parsed.Length > 0 && parsed.Length <= maxCount && parsed.All(v => v > 0 && v <= max) ? parsed : throw new FormatException();
        }, set);

    /// <summary>
    /// Parses the arguments into the declared setters. Returns null when the program should run; otherwise it has printed
    /// the help (or answered a directive such as <c>[suggest]</c>) or the error to <paramref name="console"/>, and returns
    /// the exit code: 0 for help, 2 for an error.
    /// </summary>
    public int? Parse(IReadOnlyList<string> args, TextWriter console)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(console);
        ParseResult result = root.Parse(args);
        var invocation = new InvocationConfiguration { Output = console, Error = console, EnableDefaultExceptionHandler = false };
        // "--resume=yes" reaches the parser as "--resume" and "yes", and "yes" alone would be the complaint.
        string? flagWithValue = args.FirstOrDefault(a => a.IndexOf('=', StringComparison.Ordinal) is > 0 and int i && flags.Contains(a[..i]));
        if (flagWithValue is not null)
        {
            int equals = flagWithValue.IndexOf('=', StringComparison.Ordinal);
            console.WriteLine($"{flagWithValue[..equals]} takes no value; got '{flagWithValue[(equals + 1)..]}'.");
            console.WriteLine("Run with --help to see the options.");
            return BadCommandLine;
        }

        // The same option twice is refused, whatever its kind: which of two values a long run used should never be a guess.
        string? twice = result.Tokens.Where(t => t.Type == TokenType.Option).GroupBy(t => t.Value).Where(g => g.Count() > 1).Select(g => g.Key).FirstOrDefault();
        if (twice is not null)
        {
            var given = root.Options.FirstOrDefault(o => o.Name == twice) is Option declared && result.GetResult(declared) is { } r
                ? r.Tokens.Select(t => $"'{t.Value}'").ToArray()
                : Array.Empty<string>();
            console.WriteLine(given.Length > 1
                ? $"{twice} is given {Times(given.Length)} ({string.Join(", then ", given)}): give it once."
                : $"{twice} is given more than once: give it once.");
            console.WriteLine("Run with --help to see the options.");
            return BadCommandLine;
        }

        if (result.Action is ParseErrorAction)
        {
            // The library's messages (each option's parser words its own), one a line; an unknown option with the
            // nearest known name. Not the library's error action: it dumps the help, and its typo corrections also
            // "correct" the values that follow an unknown option (5 → -h).
            foreach (string message in result.Errors.Select(e => e.Message).Distinct())
            {
                console.WriteLine(message);
            }

            foreach (string token in result.UnmatchedTokens.Where(t => t.StartsWith("--", StringComparison.Ordinal)))
            {
                string? nearest = Nearest(token);
                if (nearest is not null)
                {
                    console.WriteLine($"Did you mean {nearest} instead of {token}?");
                }
            }

            console.WriteLine("Run with --help to see the options.");
            return BadCommandLine;
        }

        if (result.Action != root.Action)
        {
            return result.Invoke(invocation); // --help, --version, [suggest]
        }

        foreach (var bind in binders)
        {
            bind(result);
        }

        return null;
    }

    private static string Times(int n) => n == 2 ? "twice" : n.ToString(CultureInfo.InvariantCulture) + " times";

    private static string Describe(string description, string synopsis) =>
        $"{description}\n\nRun it from the repository root as: {synopsis} [options]";

    // The declared option nearest to a misspelt one (at most 2 edits), or null.
    private string? Nearest(string token)
    {
        static int Distance(string a, string b)
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

        return root.Options.Select(o => (o.Name, Distance: Distance(token, o.Name))).Where(p => p.Distance <= 2).OrderBy(p => p.Distance).Select(p => p.Name).FirstOrDefault();
    }

    private static bool Given(ParseResult result, Option option) => result.GetResult(option) is { Implicit: false };

    // An option with one value, read by `parse` (FormatException or OverflowException: a bad value) and handed to `set`
    // only when it was given, so that the defaults stay where the options class declares them.
    private CommandLine Add<T>(string name, string valueName, string help, string expects, Func<string, T> parse, Action<T> set)
    {
        if (!name.StartsWith("--", StringComparison.Ordinal) || root.Options.Any(o => o.Name == name))
        {
            throw new ArgumentException($"Option {name} is malformed or declared twice.", nameof(name));
        }

        // One value per occurrence; given twice, Parse refuses the command line (the parser still accepts both, so that
        // Parse can name them).
        var option = new Option<T>(name) { Description = help, HelpName = valueName, Arity = ArgumentArity.ZeroOrMore, AllowMultipleArgumentsPerToken = false };
        option.CustomParser = result =>
        {
            if (result.Tokens.Count == 0)
            {
                result.AddError($"{name} expects {expects}; got nothing.");
                return default;
            }

            string value = result.Tokens[^1].Value;
            try
            {
                return parse(value);
            }
            catch (Exception ex) when (ex is FormatException or OverflowException)
            {
                result.AddError($"{name} expects {expects}; got '{value}'.");
                return default;
            }
        };
        root.Options.Add(option);
        binders.Add(result =>
        {
            if (Given(result, option))
            {
                set(result.GetValue(option)!);
            }
        });
        return this;
    }
}
