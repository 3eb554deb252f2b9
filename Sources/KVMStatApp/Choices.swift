#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// The launcher's choices of format, sources, architecture and guest, made from the options
/// and the registries' answers alone (never a plugin's name). `--format help` and
/// `--source help` end here with their listings.
struct Choices {
    let options: Options
    let plugins: Plugins

    /// `--format NAME` (`-c` means csv); `--format help` lists them.
    func format() throws(Failure) -> any Format {
        let registry = plugins.formats
        let shorthand = options.csv ? registry.format(shorthand: "-c") : nil
        var name = options.format ?? (shorthand ?? registry.defaultFormat)?.name ?? ""
        if name == "help" {
            let width = max(8, (registry.entries.map(\.format.name.count).max() ?? 0) + 2)
            try Console.out(registry.entries.map { "  " + $0.format.name.padded(to: width) + $0.summary + "\n" }.joined())
            throw .end(.success)
        }
        if let shorthand, options.format != nil, options.format != shorthand.name {
            throw .usage("argument -c/--csv: not allowed with argument --format \(name)")
        }
        if let shorthand { name = shorthand.name }
        guard let format = registry.format(named: name) else {
            throw .message("unknown format '\(name)'; known: " + registry.names.joined(separator: ", "), status: 2)
        }
        return format
    }

    /// The sources asked for (`--source`, and the upstream options that are sources'
    /// shorthands, `-d`/`-t`), in registry order; nil when none was asked for (the default
    /// applies). `--source help` lists them with the options each reads.
    func requestedSources() throws(Failure) -> [SourceDescription]? {
        let registry = plugins.sources
        let names = options.sources ?? []
        if names.contains("help") {
            try Console.out(registry.entries.map { entry in
                let reads = SourceOption.allCases.filter { entry.reads.contains($0) }.map(\.rawValue)
                return "  " + entry.name.padded(to: 12) + entry.summary
                    + (reads.isEmpty ? "" : " (reads " + reads.joined(separator: ", ") + ")") + "\n"
            }.joined())
            throw .end(.success)
        }
        for name in names where registry.entry(named: name) == nil {
            throw .message("unknown source '\(name)'; known: " + registry.names.joined(separator: ", "), status: 2)
        }
        let chosen = registry.entries.filter {
            names.contains($0.name) || $0.shorthand.map(options.sourceShorthands.contains) == true
        }
        return chosen.isEmpty ? nil : chosen
    }

    /// Asked-for sources must be available (else their reason, status 1); without a request,
    /// the best-ranked available default candidate, saying why a better one was passed over
    /// (upstream: tracepoints when available, else debugfs).
    func availableSources(_ requested: [SourceDescription]?,
                          configuration: SourceConfiguration) throws(Failure) -> [SourceDescription] {
        if let requested {
            for source in requested {
                if let reason = source.unavailableReason(configuration) { throw .upstream(reason) }
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
        throw .upstream(passedOver.isEmpty ? "kvmstat: no data source is registered" : passedOver.joined(separator: "\n"))
    }

    /// The pid of the one process running guest `name` (upstream's words when there is none
    /// or more than one).
    func pidOfGuest(_ name: String) throws(Failure) -> Int {
        let pids = Guests().pids(named: name)
        if pids.isEmpty { throw .upstream("Error: No guest by the name \"\(name)\" found") }
        if pids.count > 1 {
            throw .upstream("Error: Multiple processes found (pids: " + pids.map(String.init).joined(separator: " ")
                + "). Use \"-p\" to specify the desired pid")
        }
        return pids[0]
    }

    /// `--arch NAME` when given (in every mode), else the host's; and whether it is the host's
    /// (sources that call the kernel with its numbers refuse another machine's).
    func architecture() throws(Failure) -> (any Architecture, Bool) {
        let registry = plugins.architectures
        let host = HostFacts.read()
        if let name = options.arch {
            guard let arch = registry.architecture(named: name) else {
                throw .message(ArchitectureError.unknownName(name, known: registry.names).description, status: 2)
            }
            return (arch, registry.architecture(arch, runsOn: host.machine))
        }
        do {
            return (try registry.detect(on: host).architecture, true)
        } catch {
            throw .message(error.description)
        }
    }

    /// The host's paths, with the tests' and benchmarks' overrides: `KVMSTAT_DEBUGFS` points
    /// at another tree (a fake, fully readable one), `KVMSTAT_CGROUP2` at another cgroup2
    /// mount (`none`: as on a host without one).
    static func paths() -> SystemPaths {
        var paths = SystemPaths.detect()
        if let override = getenv("KVMSTAT_DEBUGFS").map({ String(cString: $0) }) {
            paths.debugfs = override
            paths.debugfsMounted = true
        }
        if let override = getenv("KVMSTAT_CGROUP2").map({ String(cString: $0) }) {
            paths.cgroup2 = override == "none" ? nil : override
        }
        return paths
    }
}
