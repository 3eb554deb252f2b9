import Foundation
import KVMTestSupport

/// The built `kvmstat` next to this test bundle.
let kvmstatBinary = Kernel.productsDirectory + "/kvmstat"

/// The package's root, for scripts under Scripts/.
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs a program to completion and captures its output.
func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws
    -> RunResult
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let errReader = Thread.detachNewReader(err.fileHandleForReading)
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return RunResult(status: process.terminationStatus,
                     stdout: String(decoding: outData, as: UTF8.self),
                     stderr: String(decoding: errReader.wait(), as: UTF8.self))
}

func kvmstat(_ arguments: String...) throws -> RunResult {
    try run(kvmstatBinary, arguments)
}

/// kvmstat running in the background, for batch and log tests that drive a workload while
/// it counts.
final class BackgroundKvmstat {
    let process = Process()
    private var out = Pipe()
    private let err = Pipe()
    private var errReader: DataReader!

    init(_ arguments: [String], environment: [String: String] = [:], stdout: Pipe? = nil,
         executable: String = kvmstatBinary) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let stdout { out = stdout }
        process.standardOutput = out
        process.standardError = err
        try process.run()
        errReader = Thread.detachNewReader(err.fileHandleForReading)
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits until kvmstat's perf events are all open (their count stops growing), and a
    /// little more so its first sample is taken.
    func waitUntilCounting() {
        var last = -1
        var stableSince = Date()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let count = perfDescriptors()
            if count != last {
                last = count
                stableSince = Date()
            } else if count > 0 && Date().timeIntervalSince(stableSince) > 0.15 {
                break
            }
            usleep(20_000)
        }
        usleep(200_000)
    }

    func perfDescriptors() -> Int {
        let dir = "/proc/\(pid)/fd"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return entries.filter {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + $0))?
                .contains("perf_event") == true
        }.count
    }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Standard output read so far by `waitForOutput`.
    private var early = Data()

    /// Waits (up to `seconds`) until what kvmstat has written to standard output satisfies
    /// `ready` — its own records are the readiness signal, not a guess of how long it takes;
    /// false when they never did.
    @discardableResult
    func waitForOutput(within seconds: Double = 10, _ ready: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        let fd = out.fileHandleForReading.fileDescriptor
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !ready(String(decoding: early, as: UTF8.self)) {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(min(left, 1) * 1000)) > 0 else { continue }
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { return ready(String(decoding: early, as: UTF8.self)) }
            early.append(contentsOf: buffer[0..<count])
        }
        return true
    }

    /// Complete lines read so far by `waitForOutput`.
    var linesSoFar: Int { early.filter { $0 == UInt8(ascii: "\n") }.count }

    /// Waits until standard output has `count` complete lines.
    @discardableResult
    func waitForLines(_ count: Int, within seconds: Double = 10) -> Bool {
        waitForOutput(within: seconds) { $0.filter { $0 == "\n" }.count >= count }
    }

    /// Waits for the exit and returns everything it printed.
    func finish() -> RunResult {
        let data = early + out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return RunResult(status: process.terminationStatus,
                         stdout: String(decoding: data, as: UTF8.self),
                         stderr: String(decoding: errReader.wait(), as: UTF8.self))
    }

    var stdout: FileHandle { out.fileHandleForReading }

    /// Waits up to `seconds` for the exit; a kvmstat still running then is killed (so a test
    /// of a hang fails instead of hanging) and nil is returned.
    func exit(within seconds: Double) -> (status: Int32, bySignal: Bool)? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        guard !process.isRunning else {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal)
    }

    /// Everything written to stderr (after the exit).
    var stderrText: String { String(decoding: errReader.wait(), as: UTF8.self) }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass: a test waits on what it
/// needs to see (a file's records, a count), not on a guess of how long that takes.
@discardableResult
func waitUntil(within seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while try !condition() {
        guard Date() < deadline else { return false }
        usleep(20_000)
    }
    return true
}

/// A fake debugfs with `fields` in its kvm directory and one VM (`100-5`) holding them, for
/// kvmstat through KVMSTAT_DEBUGFS without real KVM.
final class FakeTree {
    let root = NSTemporaryDirectory() + "kvmstat-tree-" + UUID().uuidString
    var kvm: String { root + "/kvm" }

    init(fields: [String], vm: String? = "100-5") throws {
        try FileManager.default.createDirectory(atPath: kvm, withIntermediateDirectories: true)
        for field in fields { try "0\n".write(toFile: kvm + "/" + field, atomically: false, encoding: .utf8) }
        if let vm {
            try FileManager.default.createDirectory(atPath: kvm + "/" + vm, withIntermediateDirectories: true)
            for field in fields {
                try "7\n".write(toFile: "\(kvm)/\(vm)/\(field)", atomically: false, encoding: .utf8)
            }
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    var environment: [String: String] { ["KVMSTAT_DEBUGFS": root] }
}

/// Reads a pipe to its end on another thread (so a full stderr pipe never blocks the child).
final class DataReader: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    func wait() -> Data {
        done.wait()
        return data
    }
}

extension Thread {
    static func detachNewReader(_ handle: FileHandle) -> DataReader { DataReader(handle) }
}

/// Each JSON-lines record of `text`, as an object (a line that is none left out).
func jsonRecords(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { line in
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }
}

/// The `total` of `event` in each JSON-lines record of `text`.
func jsonTotals(_ text: String, _ event: String) -> [Int] {
    jsonRecords(text).compactMap { object in
        ((object["events"] as? [String: Any])?[event] as? [String: Any])?["total"] as? Int
    }
}

/// Batch/log text lines as name → (total, delta) columns.
func parseBatch(_ text: String) -> [String: (Int, Int)] {
    var result: [String: (Int, Int)] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ")
        guard parts.count == 3, let total = Int(parts[1]), let delta = Int(parts[2]) else { continue }
        result[String(parts[0])] = (total, delta)
    }
    return result
}

/// A workload that keeps running rounds of its loop, named for `-name guest=`, once /proc
/// shows its name (the screen tests watch it by name and pid).
func startLoopingWorkload(_ name: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Kernel.productsDirectory + "/kvmstat-workload")
    process.arguments = ["--vcpus", "2", "--iterations", "100", "--loop", "20",
                         "-name", "guest=\(name),debug-threads=on"]
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    for _ in 0..<100 where !((try? String(contentsOfFile: "/proc/\(process.processIdentifier)/cmdline",
                                            encoding: .utf8))?.contains(name) ?? false) {
        usleep(10_000)
    }
    return process
}
