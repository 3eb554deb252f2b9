import Foundation
import KVMTestSupport
import Testing

/// `--source qmp` against real QEMU guests whose firmware does a known number of port
/// writes: each write is one exit. KVM's `exits` also counts asynchronous exits (a host
/// interrupt that lands while the guest runs), a handful at most while other tests load the
/// machine: the differences are asserted to within `noise` (14 more were seen once on a loaded host, 44 on one running other guests).
let noise = 100
@Suite(.enabled(if: Kernel.required || (Kernel.available && QEMUGuest.available),
                "needs real KVM and qemu-system-x86 (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"))
struct QMPSourceTests {
    /// `name total delta` batch lines of one guest, with its whole past (`-i`).
    private func batch(_ guest: QEMUGuest, _ extra: [String] = []) throws -> [String: (Int, Int)] {
        let result = try kvmstat(["--source", "qmp", "-1", "-i", "-p", "\(guest.pid)"] + extra)
        #expect(result.status == 0, "\(result.stderr)")
        return parseBatch(result.stdout)
    }

    private func kvmstat(_ arguments: [String]) throws -> RunResult { try run(kvmstatBinary, arguments) }

    /// A guest's by-guest row sums its events, not its nanoseconds (`halt_wait_ns` would
    /// swamp the counts and overflow the column).
    @Test func guestRowsSumEventsNotTime() throws {
        let guest = try QEMUGuest(outs: 1_000, vcpus: 1)
        try guest.waitUntilHalted()
        usleep(300_000)
        let counts = try batch(guest)
        let events = counts.filter { !$0.key.hasSuffix("_ns") && !$0.key.contains("(") }
        let result = try kvmstat(["--source", "qmp", "-1", "-i", "-p", "\(guest.pid)", "--by-guest"])
        #expect(result.status == 0, "\(result.stderr)")
        let row = try #require(result.stdout.split(separator: "\n").first { $0.contains("pid \(guest.pid)") })
        let total = Int(row.split(separator: " ").dropLast().last ?? "") ?? -1
        #expect(total >= 1_000, "\(row)")
        // Within what the guest's events came to (a few more exits between the two runs), and
        // without the nanoseconds (halt polling) that the row summed before.
        #expect(total <= events.values.reduce(0) { $0 + $1.0 } * 2, "\(row) vs \(events)")
        let nanoseconds = counts.filter { $0.key.hasSuffix("_ns") }.values.reduce(0) { $0 + $1.0 }
        if nanoseconds > 4 * total { #expect(total < nanoseconds / 2) }
    }

    @Test func exactCountsPerGuestAndVCPU() throws {
        let none = try QEMUGuest(outs: 0, vcpus: 2)
        let many = try QEMUGuest(outs: 10_000, vcpus: 2)
        try none.waitUntilHalted()
        try many.waitUntilHalted()
        let base = try batch(none, ["-f", "exits|halt_exits"])
        let counts = try batch(many, ["-f", "exits|halt_exits"])
        let baseExits = try #require(base["exits"]?.0)
        let exits = try #require(counts["exits"]?.0)
        #expect((baseExits + 10_000)...(baseExits + 10_000 + noise) ~= exits, "\(counts) vs \(base)")
        #expect(counts["halt_exits"]?.0 == 1 && base["halt_exits"]?.0 == 1)
        // Per vCPU: the boot vCPU did the work; the second never ran.
        #expect(counts["exits(vcpu0)"]?.0 == exits)
        #expect(counts["exits(vcpu1)"]?.0 == 0)
        // vCPU rows are children as tracepoints' are: `$` leaves them out, a child's name
        // selects it and its parent (whose total is still every vCPU's).
        #expect(Set(try batch(many, ["-f", "exits$"]).keys) == ["exits"])
        let one = try batch(many, ["-f", #"exits\(vcpu1\)"#])
        #expect(Set(one.keys) == ["exits", "exits(vcpu1)"] && one["exits"]?.0 == exits, "\(one)")
        // Everything at once: the two guests add up (other guests may run: at least ours).
        let all = try run(kvmstatBinary, ["--source", "qmp", "-1", "-i", "-f", "halt_exits$"])
        #expect((parseBatch(all.stdout)["halt_exits"]?.0 ?? 0) >= 2)
    }

    @Test func jsonLinesAndLogCarryTheSameNames() throws {
        let guest = try QEMUGuest(outs: 500)
        try guest.waitUntilHalted()
        let json = try kvmstat(["--source", "qmp", "-1", "-i", "-p", "\(guest.pid)", "--format", "jsonl",
                                "-f", "exits"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let events = try #require(object?["events"] as? [String: [String: Any]])
        let exits = try #require(events["exits"]?["total"] as? Int)
        #expect(exits >= 500)
        #expect(events["exits(vcpu0)"]?["parent"] as? String == "exits")
        let log = try BackgroundKvmstat(["--source", "qmp", "-l", "-s", "0.2", "-p", "\(guest.pid)", "-f", "exits"])
        usleep(900_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.first?.split(separator: " ") == ["exits", "exits(vcpu0)"])
        #expect(lines.count >= 3)
    }

    /// Histograms go to jsonl as the kernel's buckets: per vCPU as children, summed in their
    /// parent, equal to what QEMU itself answers; other formats and unmatched filters leave
    /// them out.
    @Test func histogramsInJSONLines() throws {
        let guest = try QEMUGuest(outs: 100, vcpus: 2)
        try guest.waitUntilHalted()
        let json = try kvmstat(["--source", "qmp", "-1", "-p", "\(guest.pid)", "--format", "jsonl",
                                "-f", "halt_wait_hist"])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let histograms = try #require(object?["histograms"] as? [String: [String: Any]], "\(json.stdout)")
        let total = try #require(histograms["halt_wait_hist"])
        #expect(total["scale"] as? String == "log2" && total["unit"] as? String == "seconds")
        #expect(total["exponent"] as? Int == -9 && total["base"] as? Int == 10)
        let buckets = try #require(total["buckets"] as? [Int])
        let vcpu0 = try #require(histograms["halt_wait_hist(vcpu0)"]?["buckets"] as? [Int])
        let vcpu1 = try #require(histograms["halt_wait_hist(vcpu1)"]?["buckets"] as? [Int])
        #expect(histograms["halt_wait_hist(vcpu1)"]?["parent"] as? String == "halt_wait_hist")
        #expect(buckets == zip(vcpu0, vcpu1).map { $0 + $1 } && buckets.count == vcpu0.count)
        // QEMU's own answer, asked later: the boot vCPU's buckets are ours or a few wake-ups on.
        let answer = try guest.command(#"{"execute": "query-stats", "arguments": {"target": "vcpu", "providers": [{"provider": "kvm", "names": ["halt_wait_hist"]}]}}"#)
        let returned = try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any]
        let perVCPU = (returned?["return"] as? [[String: Any]] ?? []).compactMap {
            (($0["stats"] as? [[String: Any]])?.first?["value"] as? [Int])
        }
        #expect(vcpu0.reduce(0, +) > 0)
        #expect(perVCPU.contains { later in
            zip(later, vcpu0).allSatisfy { $0 >= $1 } && later.reduce(0, +) - vcpu0.reduce(0, +) <= noise
        }, "\(perVCPU) vs \(vcpu0)")
        // Not asked for: no histograms key; text has no place for them.
        let plain = try kvmstat(["--source", "qmp", "-1", "-p", "\(guest.pid)", "--format", "jsonl", "-f", "exits"])
        #expect(!plain.stdout.contains("histograms"))
        let text = try kvmstat(["--source", "qmp", "-1", "-p", "\(guest.pid)", "-f", "halt_wait_hist"])
        #expect(text.status == 0 && !text.stdout.contains("halt_wait_hist"), "\(text.stdout)")
    }

    /// The tracepoint source counts the same writes as userspace IO exits: from guests started
    /// paused and traced from their first instruction, the difference a write count makes is
    /// the same in both sources, and exact.
    @Test func tracepointsAgreeWithQMP() throws {
        func traced(_ guest: QEMUGuest) throws -> (io: Int, exits: Int) {
            let tracepoints = try BackgroundKvmstat(["-1", "-p", "\(guest.pid)", "-f", "kvm_userspace_exit"])
            tracepoints.waitUntilCounting()
            try guest.resume()
            try guest.waitUntilHalted()
            let counts = parseBatch(tracepoints.finish().stdout)
            return (counts["kvm_userspace_exit(IO)"]?.0 ?? -1, try batch(guest, ["-f", "exits$"])["exits"]?.0 ?? -1)
        }
        let many = try traced(try QEMUGuest(outs: 3_000, paused: true))
        let none = try traced(try QEMUGuest(outs: 0, paused: true))
        // An `out` whose exit a signal interrupts is taken to userspace again, and `exits`
        // counts host interrupts: each source may see a few more than the writes, never fewer.
        #expect(3_000...(3_000 + noise) ~= many.io - none.io, "\(many) \(none)")
        #expect(3_000...(3_000 + noise) ~= many.exits - none.exits, "\(many) \(none)")
    }

    /// A vCPU plugged while kvmstat counts (`device_add`) gets its row within a sample or two
    /// of its first statistics: its index is asked for when an answer names a vCPU not known,
    /// not only on the periodic recheck (every `vcpusRecheck` samples, a second here).
    @Test func pluggedVCPUIsCountedAtOnce() throws {
        let guest = try QEMUGuest(outs: 500, vcpus: 1, maxVCPUs: 2, monitors: .both)
        try guest.waitUntilHalted()
        let log = try BackgroundKvmstat(["--source", "qmp", "-l", "-s", "0.1", "-p", "\(guest.pid)",
                                         "--format", "jsonl", "-f", "^exits"])
        // Plugged just after a periodic recheck (samples 1, 11, 21...): eleven records are
        // out, so the next recheck is about nine samples away. Counted in samples, not seconds,
        // so a loaded machine cannot move the plug onto a recheck.
        try #require(log.waitForLines(11), "kvmstat wrote no 11 records")
        let before = log.linesSoFar
        try #require(before < 17, "the plug came too close to the next recheck (\(before) records)")
        let answer = try guest.command(#"{"execute": "device_add", "arguments": {"driver": "max-x86_64-cpu", "#
                                       + #""socket-id": 0, "core-id": 1, "thread-id": 0, "id": "cpu1"}}"#)
        #expect(answer.contains("\"return\""), "\(answer)")
        log.waitForLines(before + 5)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = jsonRecords(result.stdout).compactMap { $0["events"] as? [String: Any] }
        #expect(lines.first.map { $0["exits(vcpu1)"] == nil && $0["exits(vcpu0)"] != nil } == true, "\(result.stdout)")
        // The sample after the plug names a vCPU not known, the one after it has its row
        // (a third allowed for a plug that lands mid-sample); the recheck is farther away.
        let first = try #require(lines.firstIndex { $0["exits(vcpu1)"] != nil }, "\(result.stdout)")
        #expect(first < before + 3, "row came \(first - before + 1) records after the plug")
        // The new vCPU never ran: its exits are not the boot vCPU's.
        let vcpu1 = (lines.last?["exits(vcpu1)"] as? [String: Any])?["total"] as? Int
        let vcpu0 = (lines.last?["exits(vcpu0)"] as? [String: Any])?["total"] as? Int
        #expect((vcpu1 ?? -1) < 100 && (vcpu0 ?? 0) >= 0, "\(String(describing: lines.last))")
    }

    @Test func guestThatGoesAwayKeepsItsCounts() throws {
        let guest = try QEMUGuest(outs: 2_000)
        try guest.waitUntilHalted()
        let log = try BackgroundKvmstat(["--source", "qmp", "-l", "-i", "-s", "0.2", "-p", "\(guest.pid)",
                                         "--format", "jsonl", "-f", "exits$"])
        usleep(600_000)
        guest.stop()
        usleep(600_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let totals = jsonTotals(result.stdout, "exits")
        #expect(totals.count >= 3)
        #expect(totals.allSatisfy { $0 >= 2_000 } && totals == totals.sorted(), "never drops: \(totals)")
    }
}

/// Monitors that misbehave: each a clear line on stderr, the sample goes on, never a hang.
@Suite struct QMPFaultTests {
    /// A process whose command line names a QMP socket, served by `script` (Python), or by
    /// nothing when `script` is nil (a regular file stands at the path).
    private func fakeMonitor(_ script: String?) throws -> (process: Process, directory: String) {
        let dir = NSTemporaryDirectory() + "kvmstat-fake-qmp-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/qmp.sock"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        if script == nil { try "not a socket".write(toFile: path, atomically: false, encoding: .utf8) }
        let server = """
            import socket, sys, time
            path = sys.argv[sys.argv.index('-qmp') + 1][5:].split(',')[0]
            behaviour = sys.argv[1]
            if behaviour == 'none':
                time.sleep(30); sys.exit(0)
            s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(4)
            while True:
                c, _ = s.accept()
                if behaviour == 'silent':
                    time.sleep(30)
                elif behaviour == 'garbage':
                    c.sendall(b'{"QMP": {"version": {}}}\\n'); c.recv(4096); c.sendall(b'{"return": {}\\n')
                    c.close()
            """
        process.arguments = ["-c", server, script ?? "none", "-qmp", "unix:\(path),server=on,wait=off",
                             "-name", "guest=fake-\(UUID().uuidString.prefix(6))"]
        try process.run()
        let deadline = Date().addingTimeInterval(5)
        while !FileManager.default.fileExists(atPath: path) && Date() < deadline { usleep(10_000) }
        return (process, dir)
    }

    @Test(arguments: [("silent", "no answer"), ("garbage", "malformed JSON"), (nil, "cannot connect")])
    func misbehavingMonitorIsReportedOnceAndSkipped(behaviour: String?, said: String) throws {
        let (fake, directory) = try fakeMonitor(behaviour)
        // SIGKILL: a test runner may have blocked SIGTERM, and children inherit that.
        defer {
            kill(fake.processIdentifier, SIGKILL)
            fake.waitUntilExit()
            try? FileManager.default.removeItem(atPath: directory)
        }
        usleep(200_000)
        let started = Date()
        let result = try run(kvmstatBinary, ["--source", "qmp", "-1", "-p", "\(fake.processIdentifier)"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Date().timeIntervalSince(started) < 4, "bounded by the timeout")
        let lines = result.stderr.split(separator: "\n").filter { $0.contains("qmp: guest") }
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(lines.first?.contains(said) == true, "\(result.stderr)")
    }
}

/// The screen with the qmp source: statistics, per-vCPU rows under `x`, guests under `b`.
@Suite(.enabled(if: (Kernel.required || (Kernel.available && QEMUGuest.available))
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"),
                "needs real KVM, qemu-system-x86 and tmux"))
struct QMPScreenTests {
    @Test func perVCPUAndPerGuestOnTheScreen() throws {
        let guest = try QEMUGuest(outs: 1_000, vcpus: 2)
        try guest.waitUntilHalted()
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' --source qmp -i -p \(guest.pid) -f 'exits' -s 0.5")
        let rows = try #require(tmux.wait(timeout: 10) { $0.contains { $0.hasPrefix(" exits ") } }, "\(tmux.screen())")
        #expect(rows[0].contains("(\(guest.name))"))
        tmux.send("x")
        #expect(tmux.wait(for: "   exits(vcpu0)") != nil, "\(tmux.screen())")
        tmux.send("x")
        tmux.send("b")
        let byGuest = try #require(tmux.wait(timeout: 10) { $0.contains { $0.hasPrefix(" \(guest.name) ") } },
                                   "\(tmux.screen())")
        #expect(byGuest[2].contains("Guest Name"))
        tmux.send("q")
        #expect(tmux.wait(for: "EXIT=0") != nil)
    }
}
