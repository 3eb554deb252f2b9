#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// What kvmstat can use: the architectures, sources and formats registered by whoever starts
/// it (the `kvmstat` executable registers the built-ins; a test may add its own). Nothing in
/// this module names a plugin.
public struct Plugins: Sendable {
    public var architectures: ArchitectureRegistry
    public var sources: SourceRegistry
    public var formats: FormatRegistry

    public init(architectures: ArchitectureRegistry, sources: SourceRegistry, formats: FormatRegistry) {
        self.architectures = architectures
        self.sources = sources
        self.formats = formats
    }
}

/// kvmstat's program: options, checks, and the mode they ask for.
public enum KVMStat {
    /// The name in usage, error and help lines: as argparse, the last part of argv[0], so a
    /// `kvm_stat` link says `usage: kvm_stat` and `kvm_stat: error:` as upstream did.
    static func program(invokedAs argv0: String?) -> String {
        let name = argv0?.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? ""
        return name.isEmpty ? "kvmstat" : name.escapedForDisplay
    }

    public static func main(plugins: Plugins, arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        let program = program(invokedAs: CommandLine.arguments.first)
        // First of all: standard descriptors that are safe to write, and signals that end us
        // promptly whatever we are doing (see Signals).
        Console.secureStandardDescriptors()
        Signals.start(stuck: Console.endStuck(by:force:))
        // A closed pipe must surface as EPIPE on write (handled in Console), not kill us mid-line.
        signal(SIGPIPE, SIG_IGN)
        HeapMemory.limitArenas(2)
        let ending: Ending
        do throws(Failure) {
            ending = try run(plugins: plugins, arguments: arguments, program: program)
        } catch {
            ending = Console.report(error, program: program)
        }
        Console.leave(ending)
    }

    /// Everything between the command line and the end: the one place a failure becomes a
    /// message and a status is `main`, which calls this.
    static func run(plugins: Plugins, arguments: [String], program: String) throws(Failure) -> Ending {
        let options: Options
        do { options = try Options.parse(arguments) } catch { throw .usage(error.message) }
        if options.help {
            try Console.out(HelpText.render(plugins: plugins, program: program, paths: Choices.paths(),
                                            columns: HelpText.terminalColumns()))
            return .success
        }
        if let shell = options.completions {
            guard let script = Completions.script(for: shell, plugins: plugins) else {
                throw .usage("argument --completions: invalid choice: '\(shell)' (choose from "
                    + Completions.shells.map { "'\($0)'" }.joined(separator: ", ") + ")")
            }
            try Console.out(script)
            return .success
        }
        if options.archInfo { return try ArchInfoCommand.run(options, plugins: plugins) }
        return try Launcher(options: options, plugins: plugins).run()
    }
}
