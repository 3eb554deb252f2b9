/// A small argparse work-alike: kvm_stat's users type argparse's conventions (unique prefixes
/// of long options, `--opt=value`, `-s0.5`, bundled flags, `--`), and scripts rely on its
/// exit status 2 and `usage:` + `prog: error:` output for bad command lines.
struct OptionSpec: Sendable {
    /// The key the parsed value is stored under.
    let key: String
    let short: Character?
    let longs: [String]
    /// Value placeholder (`DELAY`), or nil for a flag.
    let metavar: String?
    var help: String
    /// kvm_stat has it: wins a prefix that also matches one of kvmstat's own options, so
    /// `--f` still means `--fields` as it does upstream.
    var upstream = true

    var takesValue: Bool { metavar != nil }

    /// Its spellings: `-s`, `--set-delay`.
    var optionStrings: [String] { (short.map { ["-\($0)"] } ?? []) + longs.map { "--\($0)" } }

    /// argparse's name for the option in messages: `-s/--set-delay`.
    var displayName: String { optionStrings.joined(separator: "/") }
}

/// What the command line said: flags seen and the last value of each valued option.
struct ParsedArguments: Sendable, Equatable {
    var flags: Set<String> = []
    var values: [String: String] = [:]
    /// Every value of each option, in order (an option given twice).
    var allValues: [String: [String]] = [:]
    /// Keys in the order they were given (for options where the later one wins).
    var order: [String] = []

    func has(_ key: String) -> Bool { flags.contains(key) }
    func value(_ key: String) -> String? { values[key] }
}

/// A command-line mistake: reported as `usage:` line plus `kvmstat: error: MESSAGE`, exit 2.
struct UsageError: Error, Equatable, Sendable {
    let message: String
}

struct OptionParser: Sendable {
    let specs: [OptionSpec]

    func parse(_ arguments: [String]) throws(UsageError) -> ParsedArguments {
        var cursor = Cursor(parser: self, arguments: arguments)
        var onlyPositionals = false
        while cursor.index < arguments.count {
            let arg = arguments[cursor.index]
            defer { cursor.index += 1 }
            if onlyPositionals || !looksLikeOption(arg) {
                cursor.unrecognized.append(arg)
            } else if arg == "--" {
                // argparse with no positionals: `--` and all after it are unrecognized
                // (`-1 --` is an error, `-- -1` reports `-- -1`).
                onlyPositionals = true
                cursor.unrecognized.append(arg)
            } else if arg.hasPrefix("--") {
                // argparse prints help as soon as it reaches -h/--help.
                if try cursor.long(arg) { return cursor.result }
            } else if try cursor.shortBundle(arg) {
                return cursor.result
            }
        }
        if !cursor.unrecognized.isEmpty {
            throw UsageError(message: "unrecognized arguments: " + cursor.unrecognized.joined(separator: " "))
        }
        return cursor.result
    }

    /// Where parsing is: the next argument, what was stored, what nobody took.
    private struct Cursor {
        let parser: OptionParser
        let arguments: [String]
        var index = 0
        var result = ParsedArguments()
        var unrecognized: [String] = []

        init(parser: OptionParser, arguments: [String]) {
            self.parser = parser
            self.arguments = arguments
        }

        mutating func store(_ spec: OptionSpec, _ value: String?) {
            if let value {
                result.values[spec.key] = value
                result.allValues[spec.key, default: []].append(value)
            } else {
                result.flags.insert(spec.key)
            }
            result.order.append(spec.key)
        }

        /// The value for `spec`: attached, or the next argument unless that looks like an option.
        mutating func takeValue(_ spec: OptionSpec, attached: String?) throws(UsageError) -> String {
            if let attached { return attached }
            if index + 1 < arguments.count, !parser.looksLikeOption(arguments[index + 1]) {
                index += 1
                return arguments[index]
            }
            throw UsageError(message: "argument \(spec.displayName): expected one argument")
        }

        /// `--name`, `--name=value`, `--name value`; true when it was `--help`.
        mutating func long(_ arg: String) throws(UsageError) -> Bool {
            let body = arg.dropFirst(2)
            let equals = body.firstIndex(of: "=")
            let name = equals.map { body[..<$0] } ?? body
            let attached = equals.map { String(body[body.index(after: $0)...]) }
            guard let spec = try parser.longSpec(String(name)) else {
                unrecognized.append(arg)
                return false
            }
            if spec.takesValue {
                store(spec, try takeValue(spec, attached: attached))
            } else if let attached {
                throw UsageError(message: "argument \(spec.displayName): ignored explicit argument '\(attached)'")
            } else {
                store(spec, nil)
            }
            return spec.key == "help"
        }

        /// Short options: -d, -dt (bundle), -s0.5, -s=0.5, -s 0.5; true when it reached -h.
        mutating func shortBundle(_ arg: String) throws(UsageError) -> Bool {
            var rest = Substring(arg.dropFirst())
            var previous: OptionSpec?
            while let letter = rest.first {
                rest = rest.dropFirst()
                guard let spec = parser.specs.first(where: { $0.short == letter }) else {
                    guard let previous else {
                        unrecognized.append(arg)
                        return false
                    }
                    throw UsageError(message: "argument \(previous.displayName): "
                        + "ignored explicit argument '\(String(letter) + rest)'")
                }
                previous = spec
                if spec.key == "help" {
                    store(spec, nil)
                    return true
                }
                if spec.takesValue {
                    var attached: String? = rest.isEmpty ? nil : String(rest)
                    if let a = attached, a.hasPrefix("=") { attached = String(a.dropFirst()) }
                    store(spec, try takeValue(spec, attached: attached))
                    return false
                }
                store(spec, nil)
            }
            return false
        }
    }

    /// The option a `--name` means: an exact match, else the one option it is a prefix of.
    fileprivate func longSpec(_ name: String) throws(UsageError) -> OptionSpec? {
        if let exact = specs.first(where: { $0.longs.contains(name) }) { return exact }
        var matches: [(spec: OptionSpec, long: String)] = []
        for spec in specs {
            for long in spec.longs where long.hasPrefix(name) { matches.append((spec, long)) }
        }
        let upstreamSpecs = Set(matches.filter { $0.spec.upstream }.map(\.spec.key))
        if upstreamSpecs.count == 1, let match = matches.first(where: { $0.spec.upstream }) {
            return match.spec
        }
        if Set(matches.map(\.spec.key)).count > 1 {
            throw UsageError(message: "ambiguous option: --\(name) could match "
                + matches.map { "--\($0.long)" }.joined(separator: ", "))
        }
        return matches.first?.spec
    }

    /// argparse treats any argument starting with `-` (except `-` alone) as an option here,
    /// negative numbers included, since `-1` is itself an option.
    fileprivate func looksLikeOption(_ arg: String) -> Bool {
        arg.hasPrefix("-") && arg != "-"
    }
}
