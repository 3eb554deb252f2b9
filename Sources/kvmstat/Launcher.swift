#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// Turns checked options into a running mode: the checks upstream makes before it starts
/// (each a one-line error or warning), then batch, log or the screen.
struct Launcher {
    var options: Options

    func run() -> Never {
        let format = chooseFormat()
        var sourceNames = chooseSources()

        // Upstream's checks, in its order where it matters to scripts.
        // KVMSTAT_DEBUGFS points kvmstat at another tree (benchmarks of hosts without
        // lockdown use a fake, fully readable one).
        let debugfsOverride = getenv("KVMSTAT_DEBUGFS").map { String(cString: $0) }
        guard var paths = SystemPaths.mounted() ?? debugfsOverride.map({ _ in SystemPaths() }) else {
            Console.failAsUpstream("Please make sure that CONFIG_DEBUG_FS is enabled in your kernel, "
                + "mounted and\nreadable by the current user:\n"
                + "('mount -t debugfs debugfs /sys/kernel/debug')")
        }
        if let debugfsOverride { paths.debugfs = debugfsOverride }
        do throws(Errno) {
            guard try FileSystem.status(paths.debugfsKVM).isDirectory else { throw Errno.noSuchFile }
        } catch {
            if error == .permissionDenied {
                Console.fail("cannot access \(paths.debugfsKVM): \(error): kvmstat needs root "
                    + "(debugfs is readable by root only)")
            }
            Console.failAsUpstream("Please make sure that CONFIG_KVM is enabled in your kernel and "
                + "that the modules are loaded.")
        }
        // Every -g is looked up while the options are read, as upstream's argparse action
        // does: a guest that is not found is an error whichever of -g and -p comes last.
        var pid = options.pid
        for guest in options.guests {
            let found = pidOfGuest(guest)
            if options.guestWins { pid = found }
        }
        let logging = options.log || options.logFile != nil
        if options.csv && !logging { Console.failAsUpstream("Error: Option -c/--csv requires -l/--log") }
        if options.skipZeroRecords && !logging {
            Console.failAsUpstream("Error: Option -z/--skip-zero-records requires -l/-L")
        }
        let filter: FieldFilter?
        if options.fields.isEmpty || options.fields == "help" {
            filter = nil
        } else {
            do { filter = try FieldFilter(options.fields) } catch {
                Console.failAsUpstream("Error: " + error.description)
            }
        }
        if sourceNames.contains("tracepoint") && !FileSystem.isDirectory(paths.kvmEvents) {
            Console.err("Please enable CONFIG_TRACING in your kernel when using the option -t "
                + "(default).\nIf it is enabled, make \(paths.tracing) readable by the current user.\n")
            if explicitTracepoints { Console.leave(1) }
            Console.err("Falling back to debugfs statistics!\n")
            sourceNames = ["debugfs"]
        }
        if pid > 0 && !FileSystem.isDirectory("/proc/\(pid)") || pid < 0 {
            Console.err("Did you use a (unsupported) tid instead of a pid?\n")
            Console.failAsUpstream("Specified pid does not exist.")
        }
        if let problem = delayProblem(options.delay) { Console.failAsUpstream("Error: " + problem) }

        let architecture = detectArchitecture()
        let configuration = SourceConfiguration(
            paths: paths, architecture: architecture, pid: pid, fieldFilter: filter,
            includePast: options.includePast)

        if options.fields == "help" {
            FieldHelp.run(sourceNames: sourceNames, configuration: configuration)
        }

        // The screen needs a terminal: without one it would spin on end-of-input.
        if !logging && !options.once && (isatty(STDIN_FILENO) == 0 || isatty(STDOUT_FILENO) == 0) {
            Console.fail("the interactive screen needs a terminal on standard input and output; "
                + "use -1 or -l for files and pipes")
        }

        // Log file first: a bad path must fail before perf events are set up.
        let log: LogSink?
        if logging {
            do { log = try LogSink(path: options.logFile) } catch {
                Console.failAsUpstream("Error: Could not open file: \(options.logFile ?? "") (\(error))")
            }
        } else {
            log = nil
        }

        let stats: Stats
        do {
            stats = try Stats.make(sourceNames: sourceNames, registry: Builtins.sources,
                                   configuration: configuration)
        } catch {
            Console.fail(error.description)
        }
        Console.cleanup = { stats.close() }

        if let log {
            LogMode(stats: stats, format: format, sink: log, delay: options.delay,
                    skipZero: options.skipZeroRecords).run()
        } else if options.once {
            BatchMode(stats: stats, format: format).run()
        } else {
            if options.format != nil {
                Console.usageError("argument --format: applies to -1, -l and -L only")
            }
            InteractiveScreen(stats: stats, delay: options.delay).run()
        }
        Console.leave(0)
    }

    private var explicitTracepoints: Bool {
        options.tracepoints || options.sources?.contains("tracepoint") == true
    }

    /// `--format NAME` (`-c` means csv); `--format help` lists them.
    private func chooseFormat() -> any Format {
        let registry = Builtins.formats
        var name = options.format ?? (options.csv ? "csv" : "text")
        if name == "help" {
            for entry in registry.entries {
                Console.out("  " + entry.format.name.padded(to: 8) + entry.summary + "\n")
            }
            exit(0)
        }
        if options.csv && options.format != nil && options.format != "csv" {
            Console.usageError("argument -c/--csv: not allowed with argument --format \(name)")
        }
        if options.csv { name = "csv" }
        guard let format = registry.format(named: name) else {
            Console.fail("unknown format '\(name)'; known: " + registry.names.joined(separator: ", "),
                         status: 2)
        }
        return format
    }

    /// `--source NAME,...`, `-d`, `-t`; tracepoints when nothing is chosen (upstream's default).
    private func chooseSources() -> [String] {
        let registry = Builtins.sources
        var names: [String] = []
        if options.debugfs { names.append("debugfs") }
        if options.tracepoints { names.append("tracepoint") }
        for name in options.sources ?? [] {
            if name == "help" {
                for entry in registry.entries {
                    Console.out("  " + entry.name.padded(to: 12) + entry.summary + "\n")
                }
                exit(0)
            }
            guard registry.entry(named: name) != nil else {
                Console.fail("unknown source '\(name)'; known: "
                    + registry.names.joined(separator: ", "), status: 2)
            }
            if !names.contains(name) { names.append(name) }
        }
        if names.isEmpty { names = ["tracepoint"] }
        // Upstream's order: debugfs first.
        return names.sorted { ($0 == "debugfs" ? 0 : 1) < ($1 == "debugfs" ? 0 : 1) }
    }

    private func pidOfGuest(_ name: String) -> Int {
        let pids = Guests().pids(named: name)
        if pids.isEmpty { Console.failAsUpstream("Error: No guest by the name \"\(name)\" found") }
        if pids.count > 1 {
            Console.failAsUpstream("Error: Multiple processes found (pids: "
                + pids.map(String.init).joined(separator: " ")
                + "). Use \"-p\" to specify the desired pid")
        }
        return pids[0]
    }

    private func detectArchitecture() -> any Architecture {
        let registry = Builtins.architectures
        if let name = options.arch, let arch = registry.architecture(named: name) { return arch }
        do {
            return try registry.detect(on: HostFacts.read()).architecture
        } catch {
            Console.fail(error.description)
        }
    }
}
