#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

// First of all: standard descriptors that are safe to write, and signals that end us
// promptly whatever we are doing (see Signals).
Console.secureStandardDescriptors()
Signals.start(stuck: Console.endStuck(by:force:))
// A closed pipe must surface as EPIPE on write (handled in Console), not kill us mid-line.
signal(SIGPIPE, SIG_IGN)

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    Console.usageError(error.message)
}

if options.help {
    Console.out(HelpText.render())
    exit(0)
}

if options.archInfo || options.arch != nil {
    ArchInfoCommand.run(options)
}

Launcher(options: options).run()
