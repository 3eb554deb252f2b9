#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// Turns checked options into a running mode: the checks upstream makes before it starts
/// (each a one-line error or warning), then batch, log or the screen. It knows sources,
/// formats and architectures only through the registries' answers, never by name.
struct Launcher {
    var options: Options
    var plugins: Plugins

    private var logging: Bool { options.log || options.logFile != nil }

    func run() -> Never {
        // Usage first: no source is opened before every option combination is checked.
        let format = chooseFormat()
        if options.format != nil && !logging && !options.once {
            Console.usageError("argument --format: applies to -1, -l and -L only")
        }
        let requested = requestedSources()
        let (architecture, isHosts) = chooseArchitecture()

        // KVMSTAT_DEBUGFS points kvmstat at another tree (benchmarks of hosts without
        // lockdown use a fake, fully readable one).
        var paths = SystemPaths.detect()
        if let override = getenv("KVMSTAT_DEBUGFS").map({ String(cString: $0) }) {
            paths.debugfs = override
            paths.debugfsMounted = true
        }
        // The cgroup v2 mount to use ("none": as on a host without one).
        if let override = getenv("KVMSTAT_CGROUP2").map({ String(cString: $0) }) {
            paths.cgroup2 = override == "none" ? nil : override
        }

        // Every -g is looked up while the options are read, as upstream's argparse action
        // does: a guest that is not found is an error whichever of -g and -p comes last.
        var pid = options.pid
        for guest in options.guests {
            let found = pidOfGuest(guest)
            if options.guestWins { pid = found }
        }
        if options.csv && !logging { Console.failAsUpstream("Error: Option -c/--csv requires -l/--log") }
        var endpoint: (address: String, port: Int)?
        if let listen = options.listen {
            guard let parsed = ListenMode.parseEndpoint(listen) else {
                Console.usageError("argument --listen: invalid endpoint: '\(listen)' (PORT, ADDR:PORT or [ADDR]:PORT)")
            }
            if logging || options.once || options.byGuest {
                Console.fail("--listen serves metrics by itself; it cannot be combined with -1, -l, -L or --by-guest",
                             status: 2)
            }
            endpoint = parsed
        }
        if options.byGuest && !logging && !options.once {
            Console.fail("--by-guest is for -1 and -l/-L; the screen has 'b'", status: 2)
        }
        if options.byGuest && format.labelsGuests {
            Console.fail("--by-guest: --format \(format.name) labels every guest's series itself", status: 2)
        }
        if options.byGuest && logging && !format.recordsStandAlone {
            Console.fail("--by-guest logs need --format jsonl: guests come and go, a banner's columns cannot",
                         status: 2)
        }
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
        let configuration = SourceConfiguration(
            paths: paths, architecture: architecture, architectureIsHosts: isHosts, pid: pid,
            fieldFilter: filter, includePast: options.includePast, connectURI: options.connect)
        let sources = availableSources(requested, configuration: configuration)
        if pid > 0 && !FileSystem.isDirectory("/proc/\(pid)") || pid < 0 {
            Console.err("Did you use a (unsupported) tid instead of a pid?\n")
            Console.failAsUpstream("Specified pid does not exist.")
        }
        if let problem = delayProblem(options.delay) { Console.failAsUpstream("Error: " + problem) }

        if options.fields == "help" { FieldHelp.run(sources: sources, configuration: configuration) }

        // Listening first, as the log file: a taken port fails before perf events are set up.
        var server: MetricsServer?
        if let endpoint {
            do { server = try MetricsServer(address: endpoint.address, port: endpoint.port, formats: plugins.formats) } catch {
                Console.fail("cannot listen on \(endpoint.address):\(endpoint.port): \(error)")
            }
        }

        // The screen needs a terminal: without one it would spin on end-of-input.
        if server == nil && !logging && !options.once && (isatty(STDIN_FILENO) == 0 || isatty(STDOUT_FILENO) == 0) {
            Console.fail("the interactive screen needs a terminal on standard input and output; "
                + "use -1 or -l for files and pipes")
        }

        // Log file first: a bad path must fail before perf events are set up.
        let log: LogSink?
        if logging {
            do { log = try LogSink(path: options.logFile, replacing: format.replacesFile) } catch {
                Console.failAsUpstream("Error: Could not open file: \(options.logFile ?? "") (\(error))")
            }
        } else {
            log = nil
        }

        var opened: [any StatSource] = []
        for source in sources {
            do { opened.append(try source.make(configuration)) } catch {
                for done in opened { done.close() }
                Console.fail(error.description)
            }
        }
        if options.verbose {
            for note in opened.flatMap({ $0.setupNotes() }) { Console.err("kvmstat: \(note)\n") }
        }
        let stats = Stats(sources: opened, pid: pid, fieldsFilter: filter)
        if options.byGuest && !stats.supportsByGuest {
            for done in opened { done.close() }
            let lacking = sources.filter { !$0.byGuest }.map(\.name)
            Console.fail("--by-guest: " + (lacking.isEmpty ? "counts by guest come from one source at a time"
                : lacking.joined(separator: ", ") + " cannot count by guest"))
        }
        Console.cleanup = { stats.close() }

        if let server {
            let shown = server.listener.port
            Console.err("kvmstat: serving metrics at http://"
                + (endpoint!.address.contains(":") ? "[\(endpoint!.address)]" : endpoint!.address) + ":\(shown)/metrics\n")
            var mode = ListenMode(stats: stats, server: server, delay: options.delay)
            mode.run()
        } else if let log {
            var mode = LogMode(stats: stats, format: format, sink: log, delay: options.delay,
                               skipZero: options.skipZeroRecords, byGuest: options.byGuest)
            mode.run()
        } else if options.once {
            BatchMode(stats: stats, format: format, byGuest: options.byGuest).run()
        } else {
            // What `b` says when the sources cannot break counts down by guest (after
            // upstream's words, which name the one source that could).
            let capable = plugins.sources.entries.filter(\.byGuest).map(\.selection)
            let lacking = sources.filter { !$0.byGuest }
            let refusal = ["Command not available with "
                + (lacking.isEmpty ? sources : lacking).map(\.enabledPhrase).joined(separator: " and ") + " enabled",
                capable.isEmpty ? "No source can show guests"
                    : "Restart with one source of " + capable.joined(separator: ", ") + " and try again!"]
            InteractiveScreen(stats: stats, delay: options.delay, byGuestRefusal: refusal,
                              guestSources: plugins.sources.entries.filter(\.byGuest).map(\.name)).run()
        }
        Console.leave(0)
    }

    /// `--format NAME` (`-c` means csv); `--format help` lists them.
    private func chooseFormat() -> any Format {
        let registry = plugins.formats
        let shorthand = options.csv ? registry.format(shorthand: "-c") : nil
        var name = options.format ?? (shorthand ?? registry.defaultFormat)?.name ?? ""
        if name == "help" {
            let width = max(8, (registry.entries.map(\.format.name.count).max() ?? 0) + 2)
            for entry in registry.entries {
                Console.out("  " + entry.format.name.padded(to: width) + entry.summary + "\n")
            }
            exit(0)
        }
        if let shorthand, options.format != nil, options.format != shorthand.name {
            Console.usageError("argument -c/--csv: not allowed with argument --format \(name)")
        }
        if let shorthand { name = shorthand.name }
        guard let format = registry.format(named: name) else {
            Console.fail("unknown format '\(name)'; known: " + registry.names.joined(separator: ", "),
                         status: 2)
        }
        return format
    }

    /// The sources asked for (`--source`, and the upstream options that are sources'
    /// shorthands, `-d`/`-t`), in registry order; nil when none was asked for (the default
    /// applies). `--source help` lists them with the options each reads.
    private func requestedSources() -> [SourceDescription]? {
        let registry = plugins.sources
        let names = options.sources ?? []
        if names.contains("help") {
            for entry in registry.entries {
                let reads = SourceOption.allCases.filter { entry.reads.contains($0) }.map(\.rawValue)
                Console.out("  " + entry.name.padded(to: 12) + entry.summary
                    + (reads.isEmpty ? "" : " (reads " + reads.joined(separator: ", ") + ")") + "\n")
            }
            exit(0)
        }
        for name in names where registry.entry(named: name) == nil {
            Console.fail("unknown source '\(name)'; known: " + registry.names.joined(separator: ", "),
                         status: 2)
        }
        let chosen = registry.entries.filter {
            names.contains($0.name) || $0.shorthand.map(options.sourceShorthands.contains) == true
        }
        return chosen.isEmpty ? nil : chosen
    }

    /// Asked-for sources must be available (else their reason, status 1); without a request,
    /// the best-ranked available default candidate, saying why a better one was passed over
    /// (upstream: tracepoints when available, else debugfs).
    private func availableSources(_ requested: [SourceDescription]?,
                                  configuration: SourceConfiguration) -> [SourceDescription] {
        if let requested {
            for source in requested {
                if let reason = source.unavailableReason(configuration) { Console.failAsUpstream(reason) }
            }
            return requested
        }
        var passedOver: [String] = []
        for candidate in plugins.sources.defaultCandidates {
            guard let reason = candidate.unavailableReason(configuration) else {
                for reason in passedOver { Console.err(reason + "\n") }
                if !passedOver.isEmpty { Console.err("Falling back to \(candidate.name) statistics!\n") }
                return [candidate]
            }
            passedOver.append(reason)
        }
        for reason in passedOver.dropLast() { Console.err(reason + "\n") }
        Console.failAsUpstream(passedOver.last ?? "kvmstat: no data source is registered")
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

    /// `--arch NAME` when given (in every mode), else the host's; and whether it is the host's
    /// (sources that call the kernel with its numbers refuse another machine's).
    private func chooseArchitecture() -> (any Architecture, Bool) {
        let registry = plugins.architectures
        let host = HostFacts.read()
        if let name = options.arch {
            guard let arch = registry.architecture(named: name) else {
                Console.fail(ArchitectureError.unknownName(name, known: registry.names).description, status: 2)
            }
            return (arch, registry.architecture(arch, runsOn: host.machine))
        }
        do {
            return (try registry.detect(on: host).architecture, true)
        } catch {
            Console.fail(error.description)
        }
    }
}
