import Foundation
import KVMTestSupport
import Testing

/// Each bad input: a one-line error and the right exit status, never a trap.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct BadInputTests {
    private func expectError(_ arguments: [String], status: Int32, containing needle: String,
                             lines expectedLines: Int = 1,
                             sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try run(kvmstatBinary, arguments)
        #expect(result.status == status, "\(arguments): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(needle), "\(arguments): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        if status == 1 {
            #expect(lines.count == expectedLines, "\(arguments): \(result.stderr)", sourceLocation: sourceLocation)
        } else {
            #expect(lines.last?.hasPrefix("kvmstat: ") == true, sourceLocation: sourceLocation)
        }
        #expect(!result.stderr.contains("Fatal error"), sourceLocation: sourceLocation)
    }

    @Test func delayOutOfRange() throws {
        try expectError(["-1", "-s", "0.05"], status: 1, containing: "\"0.05\": Delay must be >=0.1")
        try expectError(["-l", "-s", "30"], status: 1, containing: "\"30.0\": Delay must be <=25.5")
        try expectError(["-s", "x"], status: 2, containing: "invalid float value: 'x'")
    }

    @Test func badRegex() throws {
        try expectError(["-1", "-f", "kvm_("], status: 1, containing: "\"kvm_(\" is not a valid regular expression")
    }

    @Test func missingPid() throws {
        try expectError(["-1", "-p", "999999999"], status: 1, containing:
            "Did you use a (unsupported) tid instead of a pid?\nSpecified pid does not exist.\n", lines: 2)
        try expectError(["-p", "abc"], status: 2, containing: "invalid int value: 'abc'")
    }

    @Test func optionsThatNeedLogging() throws {
        try expectError(["-1", "-c"], status: 1, containing: "Option -c/--csv requires -l/--log")
        try expectError(["-1", "-z"], status: 1, containing: "Option -z/--skip-zero-records requires -l/-L")
    }

    @Test func unknownGuest() throws {
        try expectError(["-1", "-g", "no-such-guest-\(getpid())"], status: 1,
                        containing: "No guest by the name \"no-such-guest-\(getpid())\" found")
    }

    @Test func severalGuestsOfOneName() throws {
        let name = "kvmstat-dup-\(getpid())"
        let a = try WorkloadProcess(iterations: 1, name: name)
        let b = try WorkloadProcess(iterations: 1, name: name)
        try expectError(["-1", "-g", name], status: 1, containing: "Multiple processes found (pids: ")
        _ = (a, b)
    }

    @Test func unwritableLogFile() throws {
        try expectError(["-L", "/nonexistent/dir/kvmstat.log"], status: 1,
                        containing: "Could not open file: /nonexistent/dir/kvmstat.log")
    }

    @Test func unknownFormatAndSource() throws {
        try expectError(["-1", "--format", "yaml"], status: 2, containing: "known: text, csv, jsonl")
        try expectError(["-1", "--source", "ebpf"], status: 2, containing: "known: tracepoint, debugfs")
        try expectError(["-l", "-c", "--format", "jsonl"], status: 2, containing: "not allowed with")
    }

    @Test func usageErrors() throws {
        try expectError(["--bogus"], status: 2, containing: "kvmstat: error: unrecognized arguments: --bogus")
        let result = try run(kvmstatBinary, ["--bogus"])
        #expect(result.stderr.hasPrefix("usage: kvmstat "))
    }

    @Test func helpListings() throws {
        let formats = try run(kvmstatBinary, ["--format", "help"])
        #expect(formats.status == 0)
        #expect(["text", "csv", "jsonl"].allSatisfy { formats.stdout.contains("  \($0) ") })
        let sources = try run(kvmstatBinary, ["--source", "help"])
        #expect(sources.status == 0 && sources.stdout.contains("tracepoint") && sources.stdout.contains("debugfs"))
        let help = try run(kvmstatBinary, ["--help"])
        #expect(help.status == 0 && help.stdout.hasPrefix("usage: kvmstat"))
        #expect(help.stdout.contains("--skip-zero-records"))
    }
}

@Suite struct MountParsingTests {
    @Test func debugfsFoundByFilesystemTypeNotDevice() throws {
        let dir = NSTemporaryDirectory() + "kvmstat-mounts-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            debugfs /not/debugfs tmpfs rw 0 0
            none /srv/my\\040debug debugfs rw 0 0
            nodev /trace tracefs rw 0 0

            """.write(toFile: dir + "/mounts", atomically: false, encoding: .utf8)
        let paths = try #require(KVMCorePaths.mounted(proc: dir))
        #expect(paths.debugfs == "/srv/my debug")
        #expect(paths.tracing == "/trace")
        try "none /x tmpfs rw 0 0\n".write(toFile: dir + "/mounts", atomically: false, encoding: .utf8)
        #expect(KVMCorePaths.mounted(proc: dir) == nil)
    }
}
