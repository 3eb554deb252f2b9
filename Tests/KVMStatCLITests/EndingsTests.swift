import Foundation
import KVMTestSupport
import Testing

/// kvmstat ends promptly, with the status the README promises, whatever it is doing when a
/// signal comes; and it never leaves a broken log or writes where it should not.
@Suite struct EndingsTests {
    /// Field names like the kernel's: long enough for a catastrophic regex to run for ages.
    static let fields = (0..<60).map { "halt_poll_success_ns_\($0)_exits" }

    @Test(arguments: [(SIGINT, 0, false), (SIGTERM, SIGTERM, true), (SIGQUIT, SIGQUIT, true)])
    func signalEndsACatastrophicRegex(signal: Int32, status: Int32, bySignal: Bool) throws {
        let tree = try FakeTree(fields: Self.fields)
        let kvmstat = try BackgroundKvmstat(["-d", "-1", "-f", "(.*.*)*$x"], environment: tree.environment)
        usleep(500_000)
        kvmstat.signal(signal)
        let ending = try #require(kvmstat.exit(within: 1.5), "still running 1.5 s after the signal")
        #expect(ending.status == status && ending.bySignal == bySignal)
        #expect(!kvmstat.stderrText.contains("rash"), "no crash report")
    }

    @Test func signalEndsAWriteToAFullPipe() throws {
        let tree = try FakeTree(fields: Self.fields)
        let pipe = Pipe()
        _ = fcntl(pipe.fileHandleForWriting.fileDescriptor, 1031 /* F_SETPIPE_SZ */, 4096)
        let kvmstat = try BackgroundKvmstat(["-d", "-l", "-s", "0.1"], environment: tree.environment,
                                            stdout: pipe)
        // Nobody reads: after a few records every write waits for room.
        usleep(1_500_000)
        kvmstat.signal(SIGTERM)
        let ending = try #require(kvmstat.exit(within: 1.5), "still running 1.5 s after SIGTERM")
        #expect(ending.status == SIGTERM && ending.bySignal)
    }

    @Test func fifoInDebugfsNeverHangs() throws {
        let tree = try FakeTree(fields: ["exits", "halt_exits"])
        try FileManager.default.removeItem(atPath: tree.kvm + "/100-5/exits")
        #expect(mkfifo(tree.kvm + "/100-5/exits", 0o644) == 0)
        let kvmstat = try BackgroundKvmstat(["-d", "-1"], environment: tree.environment)
        let ending = try #require(kvmstat.exit(within: 4), "kvmstat waited on a FIFO")
        #expect(ending.status == 0)
        let result = kvmstat.finish()
        #expect(result.stdout.contains("halt_exits"))
    }

    @Test func sigquitEndsAsUpstreamWithoutADump() throws {
        let tree = try FakeTree(fields: ["exits"])
        let kvmstat = try BackgroundKvmstat(["-d", "-l", "-s", "0.1"], environment: tree.environment)
        #expect(kvmstat.waitForLines(2), "logging")
        kvmstat.signal(SIGQUIT)
        let ending = try #require(kvmstat.exit(within: 1.5))
        #expect(ending.status == SIGQUIT && ending.bySignal, "status 131 in a shell")
        #expect(kvmstat.stderrText.isEmpty)
    }

    @Test func noTerminalIsOneClearLine() throws {
        let tree = try FakeTree(fields: ["exits"])
        let kvmstat = try BackgroundKvmstat(["-d"], environment: tree.environment)
        let ending = try #require(kvmstat.exit(within: 2), "the screen without a terminal spun")
        #expect(ending.status == 1)
        let message = kvmstat.stderrText
        #expect(message.hasPrefix("kvmstat: ") && message.contains("terminal"))
        #expect(message.split(separator: "\n").count == 1)
    }

    /// `2>&-` and `>&-`: with a standard descriptor closed, no log file or perf event may
    /// take its number.
    @Test func closedStandardDescriptorsStaySafe() throws {
        let tree = try FakeTree(fields: ["exits", "halt_exits"])
        let log = tree.root + "/log.csv"
        let script = "KVMSTAT_DEBUGFS='\(tree.root)' '\(kvmstatBinary)' -d -c -L '\(log)' -s 0.1 2>&- & "
            + "sleep 0.6; kill -TERM $!; wait $!"
        // SIGTERM: a background job of a script starts with SIGINT ignored, and kvmstat keeps
        // it ignored (as nohup users need); SIGTERM ends it as the signal would (128 + 15).
        let result = try run("/bin/sh", ["-c", script])
        #expect(result.status == 128 + SIGTERM)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.first == "timestamp,exits,halt_exits", "\(text)")
        for line in lines.dropFirst() { #expect(line.split(separator: ",").count == 3, "\(line)") }
        let batch = try run("/bin/sh", ["-c", "KVMSTAT_DEBUGFS='\(tree.root)' '\(kvmstatBinary)' -d -1 >&- 2>/dev/null; echo $?"])
        #expect(batch.stdout == "1\n" || batch.stdout == "0\n")
    }

    /// A pipe whose writing end was made non-blocking by someone else (EAGAIN when full):
    /// kvmstat waits for room instead of failing.
    @Test func nonBlockingStdoutWaitsForRoom() throws {
        let tree = try FakeTree(fields: Self.fields)
        let pipe = Pipe()
        let writing = pipe.fileHandleForWriting.fileDescriptor
        _ = fcntl(writing, 1031 /* F_SETPIPE_SZ */, 4096)
        _ = fcntl(writing, F_SETFL, fcntl(writing, F_GETFL) | O_NONBLOCK)
        let kvmstat = try BackgroundKvmstat(["-d", "-l", "-s", "0.1"], environment: tree.environment,
                                            stdout: pipe)
        usleep(1_200_000)  // the pipe fills up; writes get EAGAIN
        #expect(kvmstat.process.isRunning, "kvmstat gave up on a full non-blocking pipe")
        let reader = DataReader(pipe.fileHandleForReading)
        usleep(1_000_000)  // room again: records go on
        kvmstat.signal(SIGINT)
        #expect(kvmstat.exit(within: 2)?.status == 0, "\(kvmstat.stderrText)")
        let text = String(decoding: reader.wait(), as: UTF8.self)
        let records = text.split(separator: "\n").filter { $0.first?.isNumber == true }
        #expect(records.count >= 12)
        for record in records { #expect(record.split(separator: " ").count == Self.fields.count + 2) }
    }

    /// ENOSPC part-way through a record: the file keeps whole records only, the reason is on
    /// stderr, and a run after space was freed does not glue its first record to the last.
    @Test(.enabled(if: getuid() == 0, "mounts a small tmpfs: needs root"))
    func fullDiskLeavesOnlyWholeRecords() throws {
        let tree = try FakeTree(fields: Self.fields)
        let disk = tree.root + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        #expect(try run("/bin/mount", ["-t", "tmpfs", "-o", "size=16k", "tmpfs", disk]).status == 0)
        defer { _ = try? run("/bin/umount", [disk]) }
        let filler = disk + "/filler"
        try Data(count: 4096).write(to: URL(fileURLWithPath: filler))
        let log = disk + "/kvmstat.csv"
        let kvmstat = try BackgroundKvmstat(["-d", "-c", "-L", log, "-s", "0.1"], environment: tree.environment)
        let ending = try #require(kvmstat.exit(within: 20), "the disk never filled")
        #expect(ending.status == 1)
        let message = kvmstat.stderrText
        #expect(message.contains("No space left on device"), "\(message)")
        func checkWhole(_ text: String) {
            #expect(text.last == "\n", "the file ends with a whole record")
            for line in text.split(separator: "\n") {
                #expect(line.split(separator: ",", omittingEmptySubsequences: false).count == Self.fields.count + 1)
            }
        }
        let full = try String(contentsOfFile: log, encoding: .utf8)
        checkWhole(full)
        // Space again: the next run appends whole records after the last.
        try FileManager.default.removeItem(atPath: filler)
        let again = try BackgroundKvmstat(["-d", "-c", "-L", log, "-s", "0.1"], environment: tree.environment)
        usleep(500_000)
        again.signal(SIGINT)
        #expect(again.exit(within: 2)?.status == 0)
        let after = try String(contentsOfFile: log, encoding: .utf8)
        #expect(after.count > full.count)
        checkWhole(after)
    }
}

/// The screen's endings, in a real terminal (tmux).
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"), "needs tmux"))
struct ScreenEndingsTests {
    /// The kvmstat process (not the shell that started it) whose command line has `tag`.
    private func pid(matching tag: String) -> Int32? {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = Int32(entry),
                      let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/exe"),
                      exe == kvmstatBinary,
                      let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                      String(decoding: cmdline, as: UTF8.self).contains(tag)
                else { continue }
                return pid
            }
            usleep(5_000)
        }
        return nil
    }

    @Test(arguments: [(SIGTERM, 143), (SIGHUP, 129), (SIGINT, 0)])
    func signalEndsTheScreenWithItsStatus(signal: Int32, status: Int) throws {
        let tree = try FakeTree(fields: ["exits", "halt_exits"])
        let tag = "exits|tag\(UUID().uuidString.prefix(8))"
        let tmux = try TmuxSession(command: "KVMSTAT_DEBUGFS='\(tree.root)' '\(kvmstatBinary)' -d -f '\(tag)'")
        #expect(tmux.wait(for: "kvm statistics") != nil)
        let kvmstat = try #require(pid(matching: tag))
        kill(kvmstat, signal)
        let screen = tmux.wait(for: "EXIT=", timeout: 2)
        #expect(screen?.contains("EXIT=\(status)") == true, "\(screen ?? tmux.screen())")
    }

    @Test(.enabled(if: Kernel.available, realKernelNeeded))
    func signalRightAtStartEndsPromptly() throws {
        let tag = "kvm_.*|tag\(UUID().uuidString.prefix(8))"
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' -f '\(tag)'")
        let kvmstat = try #require(pid(matching: tag))
        kill(kvmstat, SIGTERM)
        let started = Date()
        let screen = tmux.wait(for: "EXIT=", timeout: 3)
        #expect(screen?.contains("EXIT=143") == true, "\(screen ?? tmux.screen())")
        #expect(Date().timeIntervalSince(started) < 1.5)
    }

    @Test func unknownTerminalTypeIsOneClearLine() throws {
        let tree = try FakeTree(fields: ["exits"])
        let tmux = try TmuxSession(command: "TERM=bogus KVMSTAT_DEBUGFS='\(tree.root)' '\(kvmstatBinary)' -d")
        let screen = try #require(tmux.wait(for: "EXIT=", timeout: 2), "\(tmux.screen())")
        #expect(screen.contains("EXIT=1"))
        let text = screen.filter { !$0.isEmpty }
        #expect(text.count == 2, "one line, then the status: \(text)")
        #expect(text.first?.hasPrefix("kvmstat: ") == true && text.first?.contains("bogus") == true)
    }
}
