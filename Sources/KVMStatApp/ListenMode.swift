#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMSources

/// `--listen [ADDR:]PORT`: samples every DELAY seconds, as log mode does, and serves the
/// latest sample to Prometheus (`MetricsServer`). SIGINT and SIGTERM end it cleanly; the
/// listening socket goes with the process.
struct ListenMode {
    let stats: Stats
    let server: MetricsServer
    let delay: Double
    var waiter: any Waiter = SignalWaiter()
    /// kvmstat's own metrics: whether sampling keeps its schedule, what it costs, each
    /// source's health.
    private var own: SelfMetrics

    init(stats: Stats, server: MetricsServer, delay: Double, architecture: String) {
        self.stats = stats
        self.server = server
        self.delay = delay
        own = SelfMetrics(architecture: architecture)
        // A source that fails is reported down, not the end of the exporter.
        stats.keepsGoing = true
    }

    /// Serves until a signal ends it (Ctrl-C: status 0; others by the signal, as upstream
    /// ends on them); the listening socket goes with the process.
    mutating func run() throws(Failure) -> Ending {
        server.start()
        try publish()
        var schedule = Schedule(delay: delay, waiter: waiter)
        do throws(Failure) {
            while true {
                try schedule.waitForNextSample { (signal) throws(Failure) in throw .end(.on(signal)) }
                try publish()
            }
        } catch .end(let ending) {
            return ending
        }
    }

    /// Takes a sample with every guest's values (the formats served label guests) and makes
    /// it the one scrapes get.
    private mutating func publish() throws(Failure) {
        let start = Signals.monotonicNow()
        var sample = try stats.sample(ReadRequest(perGuest: true))
        own.sampleTaken(seconds: Signals.monotonicNow() - start)
        own.add(to: &sample, health: stats.health, server: server.counters, resources: ProcessResources.current())
        server.publish(sample)
        // Rendering a big host's exposition takes tens of megabytes for a moment (per-family
        // buffers, the document, its gzip): given back at once, not held until the next.
        HeapMemory.trim()
    }

    /// `PORT`, `ADDR:PORT`, `[V6ADDR]:PORT`, `ADDR` or a bare IPv6 `V6ADDR` (the default port);
    /// 127.0.0.1 unless an address is given; `localhost` is 127.0.0.1 (no name lookups: an
    /// exporter binds addresses). Nil when it is none of these.
    static func parseEndpoint(_ text: String) -> (address: String, port: Int)? {
        guard let endpoint = parseAddressAndPort(text) else { return nil }
        return (endpoint.address == "localhost" ? "127.0.0.1" : endpoint.address, endpoint.port)
    }

    private static func parseAddressAndPort(_ text: String) -> (address: String, port: Int)? {
        func port(_ part: Substring) -> Int? {
            guard let value = Int(part), (0...65535).contains(value), part.allSatisfy(\.isNumber) else { return nil }
            return value
        }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let address = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return (address, MetricsServer.defaultPort) }
            guard rest.hasPrefix(":"), let number = port(rest.dropFirst()) else { return nil }
            return (address, number)
        }
        if let number = port(Substring(text)) { return ("127.0.0.1", number) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 1, !text.isEmpty { return (text, MetricsServer.defaultPort) }
        if parts.count > 2 { return (text, MetricsServer.defaultPort) }  // `::1`: IPv6 alone
        guard parts.count == 2, let number = port(parts[1]) else { return nil }
        return (parts[0].isEmpty ? "127.0.0.1" : String(parts[0]), number)
    }
}
