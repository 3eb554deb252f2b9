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
    var maker = SampleMaker()

    mutating func run() {
        do { try stats.enableGuestEvents() } catch { Console.fail(error.description) }
        server.start()
        var last = Signals.monotonicNow()
        publish(interval: 0, now: last)
        var deadline = last + delay
        while true {
            if Signals.monotonicNow() > deadline + delay { deadline = Signals.monotonicNow() + delay }
            while let signal = Signals.wait(seconds: deadline - Signals.monotonicNow()) {
                if signal == SIGINT { return }
                Console.leave(bySignal: signal)
            }
            deadline += delay
            let now = Signals.monotonicNow()
            publish(interval: now - last, now: now)
            last = now
        }
    }

    private mutating func publish(interval: Double, now: Double) {
        let values: [EventID: EventStat]
        do { values = try stats.get() } catch { Console.fail(error.description) }
        for warning in stats.takeWarnings() { Console.warn(warning) }
        server.publish(maker.sample(values, of: stats, time: WallClock.now(), interval: interval, guestEvents: true))
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
