#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import Synchronization

/// `--listen`'s scrape endpoint: `GET /metrics` serves the latest sample in the registered
/// format whose media type the request's Accept header rates highest (Prometheus's text
/// format to a scraper that accepts anything, OpenMetrics to one that asks for it, JSON
/// Lines, ...; 406 when none is acceptable), gzipped when the request accepts gzip (as
/// Prometheus's do), `/` a short page linking to it. It names no format. One thread with
/// poll(2) serves every connection, one request per connection (`Connection: close`);
/// sampling never waits for it.
///
/// Rendered once a sample: each format scrapers have asked for (and its gzip, once asked
/// for) is made when the sample is published, on the sampling thread, into bytes every
/// scrape of that sample copies; a format asked for the first time is made by the first
/// scrape that wants it, then kept for the others. A rendering no scrape asked for in
/// `askedLately` seconds is no longer made: one `curl` of the plain text must not cost a big
/// host's every sample a 14 MB rendering held for good (Prometheus asks for gzip).
///
/// No client can stall it or exhaust descriptors: a request must arrive whole within
/// `requestTimeout` (a client sending a byte a second is dropped), headers are bounded
/// (`headerLimit`, else 431), an answer must be taken within `responseTimeout`, and at most
/// `maxConnections` are open: a new connection beyond that evicts the oldest one still
/// sending its request (so idle connections cannot lock scrapers out).
final class MetricsServer: @unchecked Sendable {
    static let defaultPort = 9595
    static let maxConnections = 256
    static let headerLimit = 8192
    static let requestTimeout = 5.0
    static let responseTimeout = 10.0

    let listener: TCPListener
    let formats: FormatRegistry

    /// A published sample and what has been made of it: each format's bytes, by format name
    /// and compression.
    struct Published: Sendable {
        var generation: UInt64
        var sample: Sample
        var made: [Rendering: (bytes: [UInt8], gzipped: Bool)] = [:]
    }

    /// One way of serving a sample: a format, gzipped or not.
    struct Rendering: Hashable, Sendable {
        var format: String
        var gzip: Bool
    }

    /// The latest sample.
    private let latest = Mutex<Published?>(nil)
    /// What scrapers have asked for, and when last (monotonic seconds): made at each
    /// publication while asked for within `askedLately` (a few: formats × 2).
    private let asked = Mutex<[Rendering: Double]>([:])
    /// Longer than any scrape interval (Prometheus's are seconds to minutes): 600 s.
    let askedLately: Double

    /// What the endpoint has done, for kvmstat's own metrics.
    struct Counters: Sendable {
        var scrapeDurations = SelfMetrics.durationHistogram()
        /// The CPU time making a sample's bytes in a format took, and gzipping them (CPU, not
        /// wall time: what it costs, whatever else runs beside it).
        var renderCPU = SelfMetrics.durationHistogram()
        var compressCPU = SelfMetrics.durationHistogram()
        var clientErrors: UInt64 = 0
        var serverErrors: UInt64 = 0
    }

    private let counting = Mutex(Counters())

    var counters: Counters { counting.withLock { $0 } }

    init(address: String, port: Int, formats: FormatRegistry, askedLately: Double = 600) throws(Errno) {
        listener = try TCPListener(address: address, port: port)
        self.formats = formats
        self.askedLately = askedLately
    }

    /// Makes `sample` the one scrapes get, with every rendering scrapers have asked for made
    /// now, once.
    func publish(_ sample: Sample) {
        let now = Signals.monotonicNow()
        let wanted = asked.withLock { asked in
            asked = asked.filter { now - $0.value < askedLately }
            return Set(asked.keys)
        }
        // The sample replaced is let go before the new one is rendered (a big host's is
        // megabytes): meanwhile scrapes get the bytes made of it, or make theirs of the new one.
        let previous = latest.withLock { current in
            current?.sample = sample
            return current
        }
        var published = Published(generation: (previous?.generation ?? 0) &+ 1, sample: sample)
        // Plain renderings first; a gzipped one compresses its plain twin's bytes when that
        // was made too (a format rendered once a sample, however it is asked for).
        for rendering in wanted.sorted(by: { !$0.gzip && $1.gzip }) {
            let plain = Rendering(format: rendering.format, gzip: false)
            if rendering.gzip, let made = published.made[plain], !made.gzipped {
                published.made[rendering] = compress(made.bytes).map { ($0, true) } ?? made
            } else if let made = make(rendering, of: sample, expectedSize: lastSize(previous?.made[rendering], rendering)) {
                published.made[rendering] = made
            }
        }
        latest.withLock { $0 = published }
    }

    /// How long the last sample's bytes in `rendering` were (0: none, or they went plain
    /// where gzip was asked).
    private func lastSize(_ made: (bytes: [UInt8], gzipped: Bool)?, _ rendering: Rendering) -> Int {
        made.map { $0.gzipped == rendering.gzip ? $0.bytes.count : 0 } ?? 0
    }

    /// The bytes of `sample` in `rendering`, and whether they are gzipped (not when zlib
    /// failed); nil for a format not registered. `expectedSize`: the last sample's length in
    /// `rendering`, when there was one (the room made for it: `Format.batchBytes`).
    private func make(_ rendering: Rendering, of sample: Sample, expectedSize: Int = 0) -> (bytes: [UInt8], gzipped: Bool)? {
        guard let format = formats.format(named: rendering.format) else { return nil }
        if rendering.gzip, let stream = GzipStream(expectedSize: expectedSize) {
            // Compressed as it is written: the plain text is never whole in memory. What
            // zlib took is the gzip's cost, the rest the rendering's.
            let start = Signals.threadCPUNow()
            format.batchBytes(sample) { stream.add($0) }
            let compressed = stream.finish()
            let seconds = Signals.threadCPUNow() - start
            if let compressed {
                counting.withLock { counters in
                    SelfMetrics.record(seconds - stream.seconds, in: &counters.renderCPU)
                    SelfMetrics.record(stream.seconds, in: &counters.compressCPU)
                }
                return (compressed, true)
            }
        }
        // Plain, or zlib failed: the answer goes uncompressed.
        return (costing(\.renderCPU) { format.batchBytes(sample, expectedSize: expectedSize) }, false)
    }

    /// The gzip of `bytes` (nil when zlib failed), its CPU time noted.
    private func compress(_ bytes: [UInt8]) -> [UInt8]? { costing(\.compressCPU) { Gzip.compress(bytes) } }

    /// `work`'s result, the CPU time it took noted in `histogram`.
    private func costing<Result>(_ histogram: WritableKeyPath<Counters, Histogram>, _ work: () -> Result) -> Result {
        let start = Signals.threadCPUNow()
        let result = work()
        let seconds = Signals.threadCPUNow() - start
        counting.withLock { SelfMetrics.record(seconds, in: &$0[keyPath: histogram]) }
        return result
    }

    /// The latest sample's bytes in `rendering` (made now if no scrape asked for it within
    /// `askedLately` before this sample), and whether they are gzipped; nil before the first
    /// sample.
    func bytes(_ rendering: Rendering) -> (bytes: [UInt8], gzip: Bool)? {
        let now = Signals.monotonicNow()
        asked.withLock { $0[rendering] = now }
        guard let published = latest.withLock({ $0 }) else { return nil }
        if let made = published.made[rendering] { return (made.bytes, made.gzipped) }
        guard let made = make(rendering, of: published.sample) else { return nil }
        latest.withLock { current in
            if current?.generation == published.generation { current?.made[rendering] = made }
        }
        return (made.bytes, made.gzipped)
    }

    /// Notes an answer's status and how long it took to make.
    func note(status: Int, seconds: Double?) {
        counting.withLock { counters in
            if let seconds { SelfMetrics.record(seconds, in: &counters.scrapeDurations) }
            if (400..<500).contains(status) { counters.clientErrors &+= 1 }
            if status >= 500 { counters.serverErrors &+= 1 }
        }
    }

    func start() {
        let thread = ServerThread(server: self)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var handle = pthread_t()
        let context = Unmanaged.passRetained(thread).toOpaque()
        pthread_create(&handle, &attributes, { raw in
            Unmanaged<ServerThread>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        pthread_attr_destroy(&attributes)
    }

    struct Connection {
        let fd: FileDescriptor
        let accepted: Double
        var request: [UInt8] = []
        var response: Answer?
        /// When the answer was ready (its own time limit starts there).
        var answered = 0.0
        var sent = 0
        /// When the answer was all sent: what the client still sends is read and dropped
        /// (up to `lingerTime`) before closing, so the answer is not lost to a reset.
        var closing: Double?
    }

    static let lingerTime = 1.0

    /// The answer to a whole request head (`request` up to its blank line), counted.
    func respond(to head: [UInt8]) -> Answer {
        let start = Signals.monotonicNow()
        let response = answer(to: head)
        note(status: response.status, seconds: Signals.monotonicNow() - start)
        return response
    }

    /// An answer: its head, and its body apart (a sample's bytes, shared, not copied).
    struct Answer {
        let status: Int
        let head: [UInt8]
        let body: [UInt8]
        var count: Int { head.count + body.count }

        /// Sends what is left from `offset`; how many bytes went, nil when the peer is gone.
        func send(from offset: Int, to fd: FileDescriptor) -> Int? {
            if offset < head.count {
                // The head and the body in one call.
                return head[offset...].withUnsafeBytes { head in
                    body.withUnsafeBytes { body in try? SocketIO.send(fd, head, body) }
                }
            }
            return body[(offset - head.count)...].withUnsafeBytes { raw in try? SocketIO.send(fd, raw) }
        }
    }

    private func answer(to head: [UInt8]) -> Answer {
        let text = String(decoding: head, as: UTF8.self)
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\r\n" || $0 == "\n" }
        guard let first = lines.first, case let parts = first.split(separator: " ", omittingEmptySubsequences: false),
              parts.count == 3, Self.isToken(parts[0]), let target = Self.originForm(parts[1]),
              parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0",
              lines.dropFirst().allSatisfy({ $0.isEmpty || $0.contains(":") })
        else { return Self.answer(400, "Bad Request", "bad request\n") }
        let method = String(parts[0])
        guard method == "GET" || method == "HEAD" else {
            return Self.answer(405, "Method Not Allowed", "only GET and HEAD\n", extra: "Allow: GET, HEAD\r\n")
        }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let bodyWanted = method == "GET"
        switch path {
        case "/metrics":
            var accept: String?
            var acceptEncoding: String?
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].lowercased()
                if name == "accept", accept == nil { accept = String(line[line.index(after: colon)...]) }
                if name == "accept-encoding", acceptEncoding == nil {
                    acceptEncoding = String(line[line.index(after: colon)...])
                }
            }
            guard let (format, mediaType, gzip) = negotiate(accept: accept, encoding: acceptEncoding) else {
                let served = formats.entries.flatMap(\.format.mediaTypes).map(\.type).joined(separator: ", ")
                return Self.answer(406, "Not Acceptable", "metrics are served as \(served)\n", body: bodyWanted)
            }
            let rendering = Rendering(format: format.name, gzip: gzip)
            if !bodyWanted {
                // A HEAD (a health check) is no scrape: it neither has a rendering made now
                // nor keeps one made every sample. Its length is said when the bytes are made
                // (HEAD may leave it out: RFC 9110 §9.3.2).
                guard let published = latest.withLock({ $0 }) else {
                    return Self.answer(503, "Service Unavailable", "no sample yet\n", body: false)
                }
                let made = published.made[rendering]
                return Self.answer(200, "OK", bytes: made?.bytes ?? [], contentType: mediaType.contentType,
                                   extra: "Vary: Accept-Encoding\r\n" + ((made?.gzipped ?? gzip) ? "Content-Encoding: gzip\r\n" : ""),
                                   body: false, length: made != nil)
            }
            guard let (bytes, gzipped) = bytes(rendering) else {
                return Self.answer(503, "Service Unavailable", "no sample yet\n", body: bodyWanted)
            }
            return Self.answer(200, "OK", bytes: bytes, contentType: mediaType.contentType,
                               extra: "Vary: Accept-Encoding\r\n" + (gzipped ? "Content-Encoding: gzip\r\n" : ""),
                               body: bodyWanted)
        case "/":
            return Self.answer(200, "OK", Self.homePage, contentType: "text/html; charset=utf-8", body: bodyWanted)
        default:
            return Self.answer(404, "Not Found", "not found; metrics are at /metrics\n", body: bodyWanted)
        }
    }

    /// What the last scrape's Accept and Accept-Encoding asked for, and what it was served: a
    /// scraper asks the same every time, and working it out again cost more than the rest
    /// of an answer. One entry: clients asking otherwise each time get it worked out.
    private struct Negotiated: Sendable {
        let accept: String?
        let encoding: String?
        let format: any Format
        let mediaType: MediaType
        let gzip: Bool
    }

    private let lastNegotiated = Mutex<Negotiated?>(nil)

    /// The format, media type and compression that serve a request asking for `accept` and
    /// `encoding`; nil when no format is acceptable.
    private func negotiate(accept: String?, encoding: String?) -> (any Format, MediaType, Bool)? {
        if let last = lastNegotiated.withLock({ $0 }), last.accept == accept, last.encoding == encoding {
            return (last.format, last.mediaType, last.gzip)
        }
        guard let (format, mediaType) = formats.negotiate(accept: accept) else { return nil }
        let gzip = Gzip.accepted(by: encoding)
        // Headers are bounded (`headerLimit`): so is what is kept.
        lastNegotiated.withLock {
            $0 = Negotiated(accept: accept, encoding: encoding, format: format, mediaType: mediaType, gzip: gzip)
        }
        return (format, mediaType, gzip)
    }

    static let homePage = """
        <html><head><title>kvmstat</title></head><body>
        <h1>kvmstat</h1><p>KVM statistics for Prometheus: <a href="/metrics">/metrics</a></p>
        </body></html>

        """

    /// A request target as a path: origin form (`/metrics`), `*`, or the absolute form a
    /// server must accept (RFC 9112 §3.2.2: `http://host:9595/metrics`); nil for others.
    static func originForm(_ target: Substring) -> Substring? {
        if target.hasPrefix("/") || target == "*" { return target }
        let lower = target.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else { return nil }
        let afterScheme = target[target.index(target.firstIndex(of: ":")!, offsetBy: 3)...]
        guard let slash = afterScheme.firstIndex(of: "/") else { return afterScheme.isEmpty ? nil : "/" }
        return afterScheme[slash...]
    }

    static func isToken(_ text: Substring) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 > 32 && $0 < 127 && !"()<>@,;:\\\"/[]?={}".utf8.contains($0) }
    }

    static func answer(_ status: Int, _ reason: String, _ body: String, contentType: String = "text/plain; charset=utf-8",
                       extra: String = "", body bodyWanted: Bool = true) -> Answer {
        answer(status, reason, bytes: Array(body.utf8), contentType: contentType, extra: extra, body: bodyWanted)
    }

    /// `length`: whether the head says the body's length (a HEAD's may not know it).
    static func answer(_ status: Int, _ reason: String, bytes: [UInt8], contentType: String, extra: String = "",
                       body bodyWanted: Bool = true, length: Bool = true) -> Answer {
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\n"
            + (length ? "Content-Length: \(bytes.count)\r\n" : "") + "Connection: close\r\n" + extra + "\r\n"
        return Answer(status: status, head: Array(head.utf8), body: bodyWanted ? bytes : [])
    }
}
