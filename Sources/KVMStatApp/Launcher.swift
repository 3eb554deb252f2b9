#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// Turns checked options into a running mode: the checks upstream makes before it starts
/// (each a one-line error or warning, in upstream's order), then batch, log, listen or the
/// screen. It knows sources, formats and architectures only through the registries' answers,
/// never by name, and ends by returning or throwing: `KVMStat.main` does the rest.
struct Launcher {
    var options: Options
    var plugins: Plugins

    private var logging: Bool { options.log || options.logFile != nil }

    /// What the checks decided, before anything is opened.
    struct Plan {
        var format: any Format
        var sources: [SourceDescription]
        var configuration: SourceConfiguration
        var endpoint: (address: String, port: Int)?
    }

    func run() throws(Failure) -> Ending {
        let plan = try check()
        if options.fields == "help" { return try FieldHelp.run(sources: plan.sources, configuration: plan.configuration) }
        // Listening first, as the log file: a taken port fails before perf events are set up.
        let server = try plan.endpoint.map { endpoint throws(Failure) in try openServer(endpoint) }
        // The screen needs a terminal: without one it would spin on end-of-input.
        if server == nil && !logging && !options.once && (isatty(STDIN_FILENO) == 0 || isatty(STDOUT_FILENO) == 0) {
            throw .message("the interactive screen needs a terminal on standard input and output; use -1 or -l for files and pipes")
        }
        // Log file first: a bad path must fail before perf events are set up.
        let log = logging ? try openLog(plan.format) : nil
        let stats = try openSources(plan)
        if let server, let endpoint = plan.endpoint {
            Console.err("kvmstat: serving metrics at http://"
                + (endpoint.address.contains(":") ? "[\(endpoint.address)]" : endpoint.address) + ":\(server.listener.port)/metrics\n")
            var mode = ListenMode(stats: stats, server: server, delay: options.delay,
                                  architecture: plan.configuration.architecture.name)
            return try mode.run()
        }
        if let log {
            var mode = LogMode(stats: stats, format: plan.format, sink: log, delay: options.delay,
                               skipZero: options.skipZeroRecords, byGuest: options.byGuest)
            return try mode.run()
        }
        if options.once {
            return try BatchMode(stats: stats, format: plan.format, byGuest: options.byGuest,
                                 latencyReport: options.latency && plan.format.name == "text")
                .run(output: StandardOutput())
        }
        return try InteractiveScreen(stats: stats, delay: options.delay, byGuestRefusal: byGuestRefusal(plan.sources),
                                     guestSources: plugins.sources.entries.filter(\.byGuest).map(\.name),
                                     timesLatency: options.latency).run()
    }

    /// Every check upstream makes before it opens anything, in upstream's order.
    private func check() throws(Failure) -> Plan {
        let choices = Choices(options: options, plugins: plugins)
        let format = try choices.format()
        if options.format != nil && !logging && !options.once {
            throw .usage("argument --format: applies to -1, -l and -L only")
        }
        let requested = try choices.requestedSources()
        let (architecture, isHosts) = try choices.architecture()
        // Every -g is looked up while the options are read, as upstream's argparse action
        // does: a guest that is not found is an error whichever of -g and -p comes last.
        var pid = options.pid
        for guest in options.guests {
            let found = try choices.pidOfGuest(guest)
            if options.guestWins { pid = found }
        }
        if options.csv && !logging { throw .upstream("Error: Option -c/--csv requires -l/--log") }
        let endpoint = try listenEndpoint()
        try checkByGuest(format)
        if options.skipZeroRecords && !logging { throw .upstream("Error: Option -z/--skip-zero-records requires -l/-L") }
        let filter = try fieldFilter()
        var configuration = SourceConfiguration(
            paths: Choices.paths(), architecture: architecture, architectureIsHosts: isHosts, pid: pid,
            fieldFilter: filter, includePast: options.includePast, connectURI: options.connect)
        configuration.latency = options.latency
        if options.latency && !(requested ?? []).contains(where: { $0.reads.contains(.latency) }) {
            throw .usage("argument --latency: needs a source that times exits (--source bpf)")
        }
        let sources = try choices.availableSources(requested, configuration: configuration)
        if pid > 0 && !FileSystem.isDirectory("/proc/\(pid)") || pid < 0 {
            throw .upstream("Did you use a (unsupported) tid instead of a pid?\nSpecified pid does not exist.")
        }
        if let problem = delayProblem(options.delay) { throw .upstream("Error: " + problem) }
        return Plan(format: format, sources: sources, configuration: configuration, endpoint: endpoint)
    }

    /// `--listen`'s endpoint, refused with the modes it cannot share the process with.
    private func listenEndpoint() throws(Failure) -> (address: String, port: Int)? {
        guard let listen = options.listen else { return nil }
        guard let parsed = ListenMode.parseEndpoint(listen) else {
            throw .usage("argument --listen: invalid endpoint: '\(listen)' (PORT, ADDR:PORT or [ADDR]:PORT)")
        }
        if logging || options.once || options.byGuest {
            throw .message("--listen serves metrics by itself; it cannot be combined with -1, -l, -L or --by-guest",
                           status: 2)
        }
        return parsed
    }

    /// `--by-guest` needs a mode and a format whose records can follow guests.
    private func checkByGuest(_ format: any Format) throws(Failure) {
        guard options.byGuest else { return }
        if !logging && !options.once { throw .message("--by-guest is for -1 and -l/-L; the screen has 'b'", status: 2) }
        if format.labelsGuests {
            throw .message("--by-guest: --format \(format.name) labels every guest's series itself", status: 2)
        }
        if logging && !format.recordsStandAlone {
            let fitting = plugins.formats.entries.map(\.format).filter { $0.recordsStandAlone && !$0.labelsGuests }
            throw .message("--by-guest logs need --format " + fitting.map(\.name).joined(separator: " or ")
                + ": guests come and go, a banner's columns cannot", status: 2)
        }
    }

    private func fieldFilter() throws(Failure) -> FieldFilter? {
        guard !options.fields.isEmpty, options.fields != "help" else { return nil }
        do { return try FieldFilter(options.fields) } catch { throw .upstream("Error: " + error.description) }
    }

    private func openServer(_ endpoint: (address: String, port: Int)) throws(Failure) -> MetricsServer {
        do { return try MetricsServer(address: endpoint.address, port: endpoint.port, formats: plugins.formats) } catch {
            throw .message("cannot listen on \(endpoint.address):\(endpoint.port): \(error)")
        }
    }

    private func openLog(_ format: any Format) throws(Failure) -> LogSink {
        do { return try LogSink(path: options.logFile, replacing: format.replacesFile) } catch {
            throw .upstream("Error: Could not open file: \(options.logFile ?? "") (\(error))")
        }
    }

    /// Opens the sources (closing those opened when one fails); from here on they are closed
    /// whichever way kvmstat ends.
    private func openSources(_ plan: Plan) throws(Failure) -> Stats {
        var opened: [any StatSource] = []
        for source in plan.sources {
            do { opened.append(try source.make(plan.configuration)) } catch {
                for done in opened { done.close() }
                throw Failure(error)
            }
        }
        if options.verbose {
            for note in opened.flatMap({ $0.setupNotes() }) { Console.err("kvmstat: \(note)\n") }
        }
        let stats = Stats(sources: opened, pid: plan.configuration.pid, fieldsFilter: plan.configuration.fieldFilter)
        Console.cleanup = { stats.close() }
        if options.byGuest && !stats.supportsByGuest {
            let lacking = plan.sources.filter { !$0.byGuest }.map(\.name)
            throw .message("--by-guest: " + (lacking.isEmpty ? "counts by guest come from one source at a time"
                : lacking.joined(separator: ", ") + " cannot count by guest"))
        }
        return stats
    }

    /// What `b` says when the sources cannot break counts down by guest (after upstream's
    /// words, which name the one source that could).
    private func byGuestRefusal(_ sources: [SourceDescription]) -> [String] {
        let capable = plugins.sources.entries.filter(\.byGuest).map(\.selection)
        let lacking = sources.filter { !$0.byGuest }
        return ["Command not available with "
            + (lacking.isEmpty ? sources : lacking).map(\.enabledPhrase).joined(separator: " and ") + " enabled",
            capable.isEmpty ? "No source can show guests"
                : "Restart with one source of " + capable.joined(separator: ", ") + " and try again!"]
    }
}
