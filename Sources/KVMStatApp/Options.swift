import KVMCore

/// kvm_stat's options plus kvmstat's own, as typed values.
struct Options: Sendable, Equatable {
    var once = false
    var csv = false
    var debugfs = false
    var fields = ""
    /// Every `-g NAME` in order, and whether the last of them came after the last `-p`.
    var guests: [String] = []
    var guestWins = false
    var includePast = false
    var log = false
    var logFile: String?
    var pid = 0
    var delay = 3.0
    var tracepoints = false
    var skipZeroRecords = false
    var help = false
    var format: String?
    var sources: [String]?
    /// Upstream's source options given (`-d`, `-t`).
    var sourceShorthands: [String] = []
    var archInfo = false
    var arch: String?
    var connect: String?
    var verbose = false
    var byGuest = false
    var latency = false
    var listen: String?
    var completions: String?

    static let delayDefault = 3.0
    static let delayRange = 0.1...25.5

    static let specs: [OptionSpec] = [
        OptionSpec(key: "help", short: "h", longs: ["help"], metavar: nil,
                   help: "show this help message and exit"),
        OptionSpec(key: "once", short: "1", longs: ["once", "batch"], metavar: nil,
                   help: "run in batch mode for one second"),
        OptionSpec(key: "csv", short: "c", longs: ["csv"], metavar: nil,
                   help: "log in csv format - requires option -l/-L"),
        OptionSpec(key: "debugfs", short: "d", longs: ["debugfs"], metavar: nil,
                   help: "retrieve statistics from debugfs"),
        OptionSpec(key: "fields", short: "f", longs: ["fields"], metavar: "FIELDS",
                   help: "fields to display (regex)\n\"-f help\" for a list of available events"),
        OptionSpec(key: "guest", short: "g", longs: ["guest"], metavar: "GUEST",
                   help: "restrict statistics to guest by name"),
        OptionSpec(key: "includePast", short: "i", longs: ["debugfs-include-past"], metavar: nil,
                   help: "include all available data on past events for debugfs"),
        OptionSpec(key: "log", short: "l", longs: ["log"], metavar: nil,
                   help: "run in logging mode (like vmstat)"),
        OptionSpec(key: "logFile", short: "L", longs: ["log-to-file"], metavar: "FILE",
                   help: "like '--log', but logging to a file"),
        OptionSpec(key: "pid", short: "p", longs: ["pid"], metavar: "PID",
                   help: "restrict statistics to pid"),
        OptionSpec(key: "delay", short: "s", longs: ["set-delay"], metavar: "DELAY",
                   help: "set delay between refreshs (value range: 0.1-25.5 secs)"),
        OptionSpec(key: "tracepoints", short: "t", longs: ["tracepoints"], metavar: nil,
                   help: "retrieve statistics from tracepoints"),
        OptionSpec(key: "skipZero", short: "z", longs: ["skip-zero-records"], metavar: nil,
                   help: "omit records with all zeros in logging mode"),
        OptionSpec(key: "format", short: nil, longs: ["format"], metavar: "NAME",
                   help: "output format: {formats}\n(-c is csv; \"--format help\" lists them)",
                   upstream: false),
        OptionSpec(key: "source", short: nil, longs: ["source"], metavar: "NAME[,NAME...]",
                   help: "data sources: {sources}\n(-t is tracepoint, -d debugfs; \"--source help\" lists them)",
                   upstream: false),
        OptionSpec(key: "archInfo", short: nil, longs: ["arch-info"], metavar: nil,
                   help: "describe the architecture's perf and exit-reason data and exit",
                   upstream: false),
        OptionSpec(key: "arch", short: nil, longs: ["arch"], metavar: "NAME",
                   help: "the architecture to use (or with --arch-info describe) instead of this\nhost's: {architectures}",
                   upstream: false),
        OptionSpec(key: "latency", short: nil, longs: ["latency"], metavar: nil,
                   help: "with --source bpf: time exits in the kernel (histograms by reason in jsonl\nand Prometheus); -1 prints the latency report",
                   upstream: false),
        OptionSpec(key: "byGuest", short: nil, longs: ["by-guest"], metavar: nil,
                   help: "records per guest instead of per event (-1, or -l/-L with --format\njsonl), as the screen's 'b'",
                   upstream: false),
        OptionSpec(key: "listen", short: nil, longs: ["listen"], metavar: "[ADDR:]PORT",
                   help: "serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR 127.0.0.1\nunless given; default port 9595)",
                   upstream: false),
        OptionSpec(key: "verbose", short: nil, longs: ["verbose"], metavar: nil,
                   help: "say on stderr how the sources set up counting (e.g. -p through a cgroup)",
                   upstream: false),
        OptionSpec(key: "connect", short: nil, longs: ["connect"], metavar: "URI",
                   help: "the libvirt to read with --source libvirt (default: qemu:///system)",
                   upstream: false),
        OptionSpec(key: "completions", short: nil, longs: ["completions"], metavar: "SHELL",
                   help: "print the completion script for bash, zsh or fish and exit",
                   upstream: false),
    ]

    /// The usage block, made from `specs` as argparse makes it: `[-h] [-1] ... [--connect
    /// URI]` after `usage: PROG `, wrapped at `width` columns (argparse's: the terminal's less
    /// 2) under the first option when it does not fit on one line.
    static func usage(program: String = "kvmstat", width: Int = 78) -> String {
        let prefix = "usage: "
        let parts = specs.map { spec in
            "[" + spec.optionStrings[0] + (spec.metavar.map { " " + $0 } ?? "") + "]"
        }
        let oneLine = prefix + program + " " + parts.joined(separator: " ")
        guard oneLine.count > width else { return oneLine }
        // argparse: a short program is followed by its options, wrapped under the first;
        // a long one (over 3/4 of the width) has them on lines of their own.
        let indent = String(repeating: " ", count: prefix.count + program.count + 1)
        var lines: [String] = []
        var line = prefix + program
        let continued = Double(prefix.count + program.count) <= 0.75 * Double(width)
        if !continued {
            lines.append(line)
            line = indent
        }
        var lineHasPart = false
        for part in parts {
            if line.count + 1 + part.count > width && lineHasPart {
                lines.append(line)
                line = indent
                lineHasPart = false
            }
            line += (line == indent ? "" : " ") + part
            lineHasPart = true
        }
        lines.append(line)
        return lines.joined(separator: "\n")
    }

    /// Parses and types the command line; only syntax and value types are checked here.
    static func parse(_ arguments: [String]) throws(UsageError) -> Options {
        let parsed = try OptionParser(specs: specs).parse(arguments)
        var options = Options()
        options.help = parsed.has("help")
        options.once = parsed.has("once")
        options.csv = parsed.has("csv")
        options.debugfs = parsed.has("debugfs")
        options.fields = parsed.value("fields") ?? ""
        options.guests = parsed.allValues["guest"] ?? []
        // As with upstream's -g action, whichever of -g and -p comes last sets the pid; every
        // -g is looked up all the same.
        let guestAt = parsed.order.lastIndex(of: "guest")
        let pidAt = parsed.order.lastIndex(of: "pid")
        options.guestWins = guestAt != nil && (pidAt == nil || guestAt! > pidAt!)
        options.includePast = parsed.has("includePast")
        options.log = parsed.has("log")
        options.logFile = parsed.value("logFile")
        options.tracepoints = parsed.has("tracepoints")
        options.skipZeroRecords = parsed.has("skipZero")
        options.format = parsed.value("format")
        // --source names any source; -d and -t pick the sources whose shorthand they are.
        let sources = (parsed.allValues["source"] ?? []).flatMap {
            $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        options.sources = sources.isEmpty ? nil : sources
        options.sourceShorthands = (options.debugfs ? ["-d"] : []) + (options.tracepoints ? ["-t"] : [])
        options.archInfo = parsed.has("archInfo")
        options.arch = parsed.value("arch")
        options.connect = parsed.value("connect")
        options.verbose = parsed.has("verbose")
        options.byGuest = parsed.has("byGuest")
        options.latency = parsed.has("latency")
        options.listen = parsed.value("listen")
        options.completions = parsed.value("completions")
        if let text = parsed.value("pid") {
            guard let pid = parsePythonInt(text) else {
                throw UsageError(message: "argument -p/--pid: invalid int value: '\(text)'")
            }
            options.pid = pid
        }
        if let text = parsed.value("delay") {
            guard let delay = parsePythonFloat(text) else {
                throw UsageError(message: "argument -s/--set-delay: invalid float value: '\(text)'")
            }
            options.delay = delay
        }
        return options
    }
}

/// Python's int(): optional sign, digits with single underscores between them, blanks around.
func parsePythonInt(_ text: String) -> Int? {
    let trimmed = text.withASCIIDigits().trimmingBlanks()
    var body = Substring(trimmed)
    var sign = 1
    if let first = body.first, first == "+" || first == "-" {
        sign = first == "-" ? -1 : 1
        body = body.dropFirst()
    }
    guard !body.isEmpty, !body.hasPrefix("_"), !body.hasSuffix("_"), !body.contains("__"),
          body.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "_") })
    else { return nil }
    // Python's ints have no limit: a number past Int's is valid and names no process.
    guard let value = Int(body.filter { $0 != "_" }) else { return sign < 0 ? Int.min : Int.max }
    return sign * value
}

/// Python's float(): decimal or exponent notation, inf/nan, blanks around.
func parsePythonFloat(_ text: String) -> Double? {
    let trimmed = text.withASCIIDigits().trimmingBlanks()
    guard !trimmed.isEmpty, !trimmed.lowercased().hasPrefix("0x"),
          !trimmed.lowercased().hasPrefix("+0x"), !trimmed.lowercased().hasPrefix("-0x")
    else { return nil }
    return Double(trimmed.replacingUnderscoresBetweenDigits())
}

extension String {
    /// Python's int() and float() read any script's decimal digits (`１`, `٣`) as ASCII ones.
    fileprivate func withASCIIDigits() -> String {
        String(String.UnicodeScalarView(unicodeScalars.map { scalar in
            guard !scalar.isASCII, scalar.properties.numericType == .decimal,
                  let value = scalar.properties.numericValue, (0...9).contains(value) else { return scalar }
            return Unicode.Scalar(UInt8(48 + Int(value)))
        }))
    }

    fileprivate func replacingUnderscoresBetweenDigits() -> String {
        let chars = Array(self)
        var out = ""
        for (i, c) in chars.enumerated() {
            if c == "_", i > 0, i < chars.count - 1, chars[i - 1].isNumber, chars[i + 1].isNumber {
                continue
            }
            out.append(c)
        }
        return out
    }
}

/// Upstream's delay check, shared by `-s` and the `s` dialog.
func delayProblem(_ delay: Double) -> String? {
    if delay.isNaN || delay < Options.delayRange.lowerBound {
        return "\"\(pythonFloat(delay))\": Delay must be >=\(Options.delayRange.lowerBound)"
    }
    if delay > Options.delayRange.upperBound {
        return "\"\(pythonFloat(delay))\": Delay must be <=\(Options.delayRange.upperBound)"
    }
    return nil
}

/// Python's str(float) for the delay messages: `0.05`, `30.0` (Swift writes these alike).
func pythonFloat(_ value: Double) -> String {
    value.isNaN ? "nan" : value.isInfinite ? (value < 0 ? "-inf" : "inf") : String(value)
}
