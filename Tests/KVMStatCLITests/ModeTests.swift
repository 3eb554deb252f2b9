import Foundation
import KVMCore
import KVMFormats
import KVMSources
@testable import KVMStatApp
import Testing

/// A source whose counters grow by known steps each read: `apples` by 1, `pears` by 2,
/// `plums(RIPE)` and its parent `plums` by 3 (or by nothing, when `frozen`).
final class SteppingSource: StatSource {
    let name = "stepping"
    var supportsByGuest: Bool { false }
    var frozen = false
    private(set) var reads: UInt64 = 0

    static let steps: [(EventID, UInt64)] = [
        ("apples", 1), ("pears", 2), ("plums", 3), (EventID("plums(RIPE)", parent: "plums"), 3),
    ]

    func availableFields() -> [String] { Self.steps.map(\.0.name) }
    func updateFields(_ filter: FieldFilter?) throws(SourceError) {}
    func setPid(_ pid: Int) throws(SourceError) {}
    func reset() throws(SourceError) { reads = 0 }
    func close() {}

    func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        if !frozen { reads += 1 }
        var reading = Reading()
        for (key, step) in Self.steps {
            reading.values[key] = reads * step
            reading.families[key.parent ?? key.name] = MetricFamily(
                key.parent ?? key.name, kind: .counter, help: "fruit", origin: .other(namespace: "fruit"))
        }
        return reading
    }
}

/// A source whose statistics come with its guests: none at first, `exits` with one guest,
/// `halt_exits` too with two; each guest's counters grow by 1 a read.
final class ArrivingSource: StatSource {
    let name = "arriving"
    var supportsByGuest: Bool { false }
    var guests = 0
    private var counts: [String: UInt64] = [:]

    func availableFields() -> [String] { ["exits", "halt_exits"] }
    func updateFields(_ filter: FieldFilter?) throws(SourceError) {}
    func setPid(_ pid: Int) throws(SourceError) {}
    func reset() throws(SourceError) {}
    func close() {}

    func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        for name in ["exits", "halt_exits"].prefix(guests) { counts[name, default: 0] += 1 }
        return Reading(values: Dictionary(uniqueKeysWithValues: counts.map { (EventID($0.key), $0.value) }))
    }
}

/// A waiter that returns at once, as a schedule of ticks, signals and things to do meanwhile.
struct ScriptedWaiter: Waiter {
    enum Step {
        case tick
        case signal(Int32)
        case run(() -> Void)
    }

    var steps: [Step]

    /// `ticks` samples, then Ctrl-C.
    init(ticks: Int) { steps = Array(repeating: .tick, count: ticks) + [.signal(SIGINT)] }

    init(_ steps: [Step]) { self.steps = steps }

    mutating func wait(seconds: Double) -> Int32? {
        while !steps.isEmpty {
            switch steps.removeFirst() {
            case .tick: return nil
            case .signal(let signal): return signal
            case .run(let action): action()
            }
        }
        return SIGINT
    }
}

/// What batch mode writes, kept.
final class BufferOutput: TextOutput {
    var text = ""
    func write(_ text: String) throws(Failure) { self.text += text }
}

/// Batch and log modes' logic, run inside the test process on a source that needs no kernel:
/// no subprocess, no sleeping.
struct ModeTests {
    static func temporaryPath(_ suffix: String) -> String {
        NSTemporaryDirectory() + "kvmstat-mode-\(UUID().uuidString).\(suffix)"
    }

    /// Log mode on `source` into `path` (CSV unless told), paced by `waiter`; how it ended.
    static func log(_ source: any StatSource, to path: String, format: any Format = CSVFormat(), skipZero: Bool = false,
                    _ waiter: ScriptedWaiter) throws -> Ending {
        var mode = LogMode(stats: Stats(sources: [source]), format: format, sink: try LogSink(path: path),
                           delay: 0.1, skipZero: skipZero)
        mode.waiter = waiter
        return try mode.run()
    }

    @Test func batchPrintsOneSampleOfOneSecond() throws {
        let output = BufferOutput()
        var mode = BatchMode(stats: Stats(sources: [SteppingSource()]), format: TextFormat())
        mode.waiter = ScriptedWaiter(ticks: 1)
        #expect(try mode.run(output: output) == .success)
        #expect(output.text == "apples" + String(repeating: " ", count: 36) + "         2         1\n"
            + "pears" + String(repeating: " ", count: 37) + "         4         2\n"
            + "plums" + String(repeating: " ", count: 37) + "         6         3\n"
            + "plums(RIPE)" + String(repeating: " ", count: 31) + "         6         3\n")
        // Ctrl-C during the second prints nothing; another signal ends by it.
        mode.waiter = ScriptedWaiter([.signal(SIGINT)])
        let interrupted = BufferOutput()
        #expect(try mode.run(output: interrupted) == .success && interrupted.text.isEmpty)
        mode.waiter = ScriptedWaiter([.signal(SIGTERM)])
        #expect(try mode.run(output: BufferOutput()) == .signal(SIGTERM))
    }

    @Test func textBannerRepeatsEveryTwentyRecords() throws {
        let path = Self.temporaryPath("log")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try Self.log(SteppingSource(), to: path, format: TextFormat(), ScriptedWaiter(ticks: 45)) == .success)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        let banner = "apples pears plums plums(RIPE) "
        #expect(lines.count == 45 + 3)
        #expect(lines[0] == banner && lines[21] == banner && lines[42] == banner)
        for line in lines where line != banner {
            #expect(line.hasSuffix("        1         2         3         3"), "\(line)")
        }
    }

    @Test func csvHeaderOnlyOnceAndNotWhenAppending() throws {
        let path = Self.temporaryPath("csv")
        defer { try? FileManager.default.removeItem(atPath: path) }
        for _ in 0..<2 {
            #expect(try Self.log(SteppingSource(), to: path, ScriptedWaiter(ticks: 25)) == .success)
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.first == "timestamp,apples,pears,plums,plums(RIPE)")
        #expect(lines.filter { $0.hasPrefix("timestamp") }.count == 1 && lines.count == 51)
    }

    @Test func skipZeroWritesOnlyRecordsThatMoved() throws {
        let path = Self.temporaryPath("csv")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let source = SteppingSource()
        #expect(try Self.log(source, to: path, skipZero: true, ScriptedWaiter([
            .tick, .run { source.frozen = true }, .tick, .tick, .run { source.frozen = false }, .tick, .signal(SIGINT),
        ])) == .success)
        let records = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst()
        #expect(records.count == 2 && records.allSatisfy { $0.hasSuffix(",1,2,3,3") }, "\(records)")
    }

    @Test func sighupStartsANewFileAndLosesNothing() throws {
        let path = Self.temporaryPath("log")
        defer {
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: path + ".1")
        }
        #expect(try Self.log(SteppingSource(), to: path, ScriptedWaiter([
            .tick, .tick, .run { _ = rename(path, path + ".1") }, .signal(SIGHUP), .tick, .tick, .tick, .signal(SIGTERM),
        ])) == .signal(SIGTERM))
        let old = try String(contentsOfFile: path + ".1", encoding: .utf8).split(separator: "\n")
        let new = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(old.first == new.first && old.first?.hasPrefix("timestamp") == true)
        let apples = (old.dropFirst() + new.dropFirst()).map { Int($0.split(separator: ",")[1])! }
        #expect(apples == [1, 1, 1, 1, 1])
    }

    /// A log started before its guests (qmp, libvirt: no statistics until a guest answers)
    /// takes their columns when they come, under a new banner; columns that go stay.
    @Test func columnsThatAppearJoinUnderANewBanner() throws {
        let path = Self.temporaryPath("csv")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let source = ArrivingSource()
        #expect(try Self.log(source, to: path, ScriptedWaiter([
            .tick, .run { source.guests = 1 }, .tick, .tick, .run { source.guests = 2 }, .tick,
            .run { source.guests = 0 }, .tick, .signal(SIGINT),
        ])) == .success)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.map { $0.split(separator: ",").dropFirst().joined(separator: ",") }
                == ["", "", "exits", "1", "1", "exits,halt_exits", "1,1", "0,0"], "\(lines)")
        #expect(lines[0] == "timestamp" && lines[2] == "timestamp,exits" && lines[5] == "timestamp,exits,halt_exits")
    }

    @Test func aFailedWriteIsAFailureValue() throws {
        // /dev/full takes nothing: the record is lost loudly, as one line, status 1.
        #expect {
            _ = try Self.log(SteppingSource(), to: "/dev/full", ScriptedWaiter(ticks: 1))
        } throws: { error in
            guard let failure = error as? Failure, case .message(let text, 1) = failure else { return false }
            return text.hasPrefix("error writing to /dev/full: ")
        }
    }
}

/// The textfile (`-L FILE.prom`): written only in the directory it had at start, through that
/// directory's descriptor, under a temporary name nobody can guess.
@Suite(.serialized) struct ReplacedFileTests {
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "kvmstat-textfile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    @Test func aSwappedDirectoryIsNotFollowed() throws {
        let directory = try Self.directory()
        let elsewhere = try Self.directory()
        defer {
            for path in [directory, directory + ".moved", elsewhere] { try? FileManager.default.removeItem(atPath: path) }
        }
        let sink = try LogSink(path: directory + "/kvmstat.prom", replacing: true)
        try sink.write(line: "kvm_exits_total 1")
        #expect(try String(contentsOfFile: directory + "/kvmstat.prom", encoding: .utf8) == "kvm_exits_total 1\n")
        // Its owner swaps the directory for a link to another one.
        try FileManager.default.moveItem(atPath: directory, toPath: directory + ".moved")
        try FileManager.default.createSymbolicLink(atPath: directory, withDestinationPath: elsewhere)
        #expect {
            try sink.write(line: "kvm_exits_total 2")
        } throws: { error in
            guard case .message(let text, 1) = error as? Failure else { return false }
            return text.contains("was moved or removed")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty, "nothing written through the link")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + ".moved") == ["kvmstat.prom"])
    }

    @Test func aRemovedDirectoryIsOneLine() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sink = try LogSink(path: directory + "/kvmstat.prom", replacing: true)
        try FileManager.default.removeItem(atPath: directory)
        #expect {
            try sink.write(line: "kvm_exits_total 2")
        } throws: { error in
            guard case .message(let text, 1) = error as? Failure else { return false }
            return text == "\(directory), the directory of \(directory)/kvmstat.prom, was moved or removed; "
                + "kvmstat writes kvmstat.prom only in the directory it had at start"
        }
    }

    @Test func whatSitsAtAGuessableTemporaryNameIsNoObstacle() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The name the temporary file once had, taken by another user's directory and link.
        let old = directory + "/.kvmstat.prom.tmp-\(getpid())"
        try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: directory + "/.kvmstat.prom.tmp", withDestinationPath: "/etc/passwd")
        let sink = try LogSink(path: directory + "/kvmstat.prom", replacing: true)
        for round in 1...3 { try sink.write(line: "kvm_exits_total \(round)") }
        #expect(try String(contentsOfFile: directory + "/kvmstat.prom", encoding: .utf8) == "kvm_exits_total 3\n")
        let left = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(left == [".kvmstat.prom.tmp", ".kvmstat.prom.tmp-\(getpid())", "kvmstat.prom"], "\(left)")
    }
}
