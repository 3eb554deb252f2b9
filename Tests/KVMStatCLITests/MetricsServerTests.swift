import Foundation
import KVMCore
@testable import KVMFormats
import KVMBuiltins
@testable import KVMStatApp
import KVMTestSupport
import Testing

// The endpoint's own parts, in process (no kvmstat started): what it renders and when, HEAD,
// gzip, and the choice of format by Accept. The scrapes of a running kvmstat are in
// PrometheusTests.swift.

/// What the endpoint makes once a sample: what scrapers asked for lately, nothing else.
struct RenderingsAskedTests {
    @Test func aRenderingNotAskedForLatelyIsNotMade() throws {
        let server = try MetricsServer(address: "127.0.0.1", port: 0, formats: Builtins.plugins.formats, askedLately: 2)
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: [:])
        sample.guestValues = [EventID("exits", guest: 7, source: "qmp"): 1]
        sample.families = ["qmp": ["exits": MetricFamily("exits", kind: .counter, help: "exits", origin: .kvmStatistic)]]
        func made() -> UInt64 { server.counters.renderCPU.count }
        server.publish(sample)
        #expect(made() == 0, "nothing asked for, nothing made")
        let plain = MetricsServer.Rendering(format: "prometheus", gzip: false)
        let first = try #require(server.bytes(plain))
        #expect(made() == 1 && String(decoding: first.bytes, as: UTF8.self).contains("kvm_guest_exits_total{"))
        // Asked for: made at the next publication, and served from it without another.
        server.publish(sample)
        #expect(made() == 2)
        _ = server.bytes(plain)
        #expect(made() == 2)
        // Not asked for within `askedLately`: no longer made; asked again, made again.
        usleep(2_200_000)
        server.publish(sample)
        server.publish(sample)
        #expect(made() == 2)
        _ = server.bytes(plain)
        server.publish(sample)
        #expect(made() == 4)
    }
}

/// A HEAD of /metrics (a health check) is no scrape: it has nothing made, now or at later
/// samples, and says the length of what was made for scrapes.
struct HeadRequestTests {
    @Test func headAsksForNoRendering() throws {
        let server = try MetricsServer(address: "127.0.0.1", port: 0, formats: Builtins.plugins.formats)
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: [:])
        sample.guestValues = [EventID("exits", guest: 7, source: "qmp"): 1]
        sample.families = ["qmp": ["exits": MetricFamily("exits", kind: .counter, help: "exits", origin: .kvmStatistic)]]
        func made() -> UInt64 { server.counters.renderCPU.count }
        func head(_ method: String) -> String {
            let answer = server.respond(to: Array("\(method) /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n".utf8))
            return String(decoding: answer.head, as: UTF8.self) + String(decoding: answer.body, as: UTF8.self)
        }
        #expect(head("HEAD").hasPrefix("HTTP/1.1 503 "))
        server.publish(sample)
        for _ in 0..<3 {
            let answer = head("HEAD")
            #expect(answer.hasPrefix("HTTP/1.1 200 ") && !answer.contains("Content-Length") && answer.hasSuffix("\r\n\r\n"), "\(answer)")
            server.publish(sample)
        }
        #expect(made() == 0, "HEAD made a rendering")
        // Once a scrape had it made, a HEAD says its length, and has nothing more made.
        let got = head("GET")
        let body = got.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        #expect(made() == 1 && body.contains("kvm_guest_exits_total{"))
        #expect(head("HEAD").contains("Content-Length: \(body.utf8.count)\r\n") && made() == 1)
    }
}

/// gzip made from pieces as they come: what gzip(1) unpacks is exactly what went in.
struct GzipStreamTests {
    static func gunzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let file = NSTemporaryDirectory() + "kvmstat-gzip-stream-\(getpid())-\(UUID().uuidString).gz"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let unzipped = try run("/bin/bash", ["-c", "gzip -dc '\(file)' | od -An -v -tu1"])
        #expect(unzipped.status == 0, "\(unzipped.stderr)")
        return unzipped.stdout.split(whereSeparator: \.isWhitespace).compactMap { UInt8($0) }
    }

    @Test func piecesOfEverySizeComeBackWhole() throws {
        // Pieces of 0 bytes, a few, just under, at and over the stage size, and nothing at all.
        var random = SystemRandomNumberGenerator()
        var input: [UInt8] = []
        let stream = try #require(GzipStream())
        for size in [0, 1, 7, 300, GzipStream.stageSize - 1, 5, GzipStream.stageSize, 2 * GzipStream.stageSize + 3, 0, 12] {
            // Text-like and random bytes both (the second barely compresses).
            let piece = (0..<size).map { $0 % 3 == 0 ? UInt8.random(in: 0...255, using: &random) : UInt8(ascii: "a") + UInt8($0 % 26) }
            input += piece
            piece.withUnsafeBytes { stream.add($0) }
        }
        let compressed = try #require(stream.finish())
        #expect(compressed.count < input.count)
        #expect(try Self.gunzip(compressed) == input)
        #expect(stream.seconds > 0)
        let empty = try #require(GzipStream()?.finish())
        #expect(try Self.gunzip(empty).isEmpty)
    }

    /// Room made from a guess of the size (the last sample's gzip): right, far too small or far
    /// too big, the bytes are the same, and no more than an eighth of slack is kept.
    @Test func sizeGuessesChangeNothingButRoom() throws {
        let input: [UInt8] = (0..<(3 * GzipStream.stageSize)).map { (index: Int) -> UInt8 in
            UInt8(97 + (index * 7 + index / 5) % 26)
        }
        let reference = try #require(Gzip.compress(input))
        for guess in [0, 1, reference.count, reference.count - 1, reference.count * 50] {
            let stream = try #require(GzipStream(expectedSize: guess))
            input.withUnsafeBytes { stream.add($0) }
            let compressed = try #require(stream.finish())
            #expect(compressed == reference, "guess \(guess)")
            #expect(compressed.capacity - compressed.count <= compressed.count / 8, "guess \(guess): \(compressed.capacity)")
        }
        #expect(try Self.gunzip(reference) == input)
    }

    /// A sample of `guests` guests × 8 vCPUs' exits (named `guestN`).
    static func sample(guests: Int) -> Sample {
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: [:])
        var values = GuestValues()
        for guest in 1...guests {
            for vcpu in 0..<8 { values[EventID("exits(vcpu\(vcpu))", parent: "exits", guest: guest, vcpu: vcpu, source: "qmp")] = UInt64(guest * vcpu) }
        }
        sample.guestValues = values
        sample.guestNames = Dictionary(uniqueKeysWithValues: (1...guests).map { ($0, "guest\($0)") })
        sample.families = ["qmp": ["exits": MetricFamily("exits", kind: .counter, help: "exits", origin: .kvmStatistic)]]
        return sample
    }

    /// Asked for gzip only, the endpoint compresses the exposition as it is written: the same
    /// bytes as the plain one once unpacked, and both costs noted.
    @Test func gzipOnlyRenderingIsThePlainOneCompressed() throws {
        let server = try MetricsServer(address: "127.0.0.1", port: 0, formats: Builtins.plugins.formats)
        let sample = Self.sample(guests: 600)
        server.publish(sample)
        for format in ["prometheus", "openmetrics"] {
            let zipped = try #require(server.bytes(MetricsServer.Rendering(format: format, gzip: true)))
            #expect(zipped.gzip)
            let plain = try #require(Builtins.plugins.formats.format(named: format)).batchBytes(sample)
            #expect(plain.count > GzipStream.stageSize && String(decoding: plain, as: UTF8.self).contains("guest=\"guest600\""))
            #expect(try Self.gunzip(zipped.bytes) == plain)
        }
        #expect(server.counters.renderCPU.count == 2 && server.counters.compressCPU.count == 2)
    }

    /// A plain rendering made with room for the last sample's length (its text written piece
    /// by piece into it) is the format's own bytes, whether the host grew, shrank or stayed.
    @Test func plainRenderingSizedFromTheLastIsTheSame() throws {
        let server = try MetricsServer(address: "127.0.0.1", port: 0, formats: Builtins.plugins.formats)
        let plain = MetricsServer.Rendering(format: "prometheus", gzip: false)
        let format = try #require(Builtins.plugins.formats.format(named: "prometheus"))
        server.publish(Self.sample(guests: 300))
        _ = try #require(server.bytes(plain))
        for guests in [300, 900, 20, 300] {
            let next = Self.sample(guests: guests)
            server.publish(next)
            let made = try #require(server.bytes(plain))
            #expect(!made.gzip && made.bytes == format.batchBytes(next), "\(guests) guests")
        }
    }
}

/// The endpoint's choice among the registered formats, by Accept.
struct NegotiationTests {
    @Test func acceptPicksTheFormat() {
        let formats = Builtins.plugins.formats
        let pick = { (accept: String?) in formats.negotiate(accept: accept).map { $0.format.name } }
        #expect(pick(nil) == "prometheus" && pick("*/*") == "prometheus")
        // What Prometheus 2.x sends: OpenMetrics rated highest.
        #expect(pick("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
            + "text/plain;version=0.0.4;q=0.5,*/*;q=0.1") == "openmetrics")
        #expect(pick("text/plain") == "prometheus")
        #expect(pick("application/jsonl") == "jsonl" && pick("application/x-ndjson; q=0.9, text/plain;q=0.1") == "jsonl")
        #expect(pick("text/csv") == "csv" && pick("text/*") == "prometheus")
        #expect(pick("image/png") == nil && pick("text/plain;q=0") == nil)
        #expect(pick("garbage") == nil && pick(",,;;") == nil)
    }

    @Test func escapingIsByUnicodeScalar() {
        // Swift takes "\r\n" for one Character; the line break in it must still be escaped.
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: [:])
        sample.guestValues = [EventID("exits", guest: 7, source: "qmp"): 1]
        sample.guestNames = [7: "x\r\nkvm_fake_total 1\r\n# "]
        sample.families = ["qmp": ["exits":
            MetricFamily("exits", kind: .counter, help: "help\r\nwith a break", origin: .kvmStatistic)]]
        let text = PrometheusFormat().batch(sample)
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix("kvm_fake_total") }, "\(text)")
        #expect(text.contains(#"guest="x\#r\nkvm_fake_total 1\#r\n# ""#), "\(text)")
        #expect(text.contains("# HELP kvm_guest_exits_total help\r\\nwith a break per guest"), "\(text)")
    }

    @Test func scalesFromAnotherUsersMonitorNeverTrap() {
        for (base, exponent) in [(10, Int.min), (10, Int.max), (2, Int.min), (2, 1_000_000_000_000_000_000), (0, 5), (-3, 2)] {
            let histogram = Histogram(scale: .log2, unit: "seconds", base: base, exponent: exponent, buckets: [1, 2, 3])
            #expect(!PrometheusFormat.upperBound(of: 2, histogram).isEmpty)
        }
    }
}
