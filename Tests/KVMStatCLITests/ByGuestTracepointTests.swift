import Foundation
import KVMTestSupport
import Testing

/// Tracepoint counts per guest through cgroups, on the real kernel: named workloads (each
/// `kvm_pio` exactly 2 per iteration and vCPU) in cgroups of their own, or sharing one.
@Suite(.serialized,
       .enabled(if: Kernel.required || (Kernel.available && TestCGroup.available),
                "needs real KVM, tracefs and a writable cgroup v2 (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"))
struct ByGuestTracepointTests {
    /// `label total delta` rows of a by-guest batch (labels have spaces: numbers from the right).
    private func rows(_ text: String) -> [String: Int] {
        var result: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.count >= 3, let total = Int(words[words.count - 2]) else { continue }
            result[words.dropLast(2).joined(separator: " ")] = total
        }
        return result
    }

    private func guestRows(_ line: Substring) -> [String: Int] {
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        var result: [String: Int] = [:]
        for guest in object?["guests"] as? [[String: Any]] ?? [] {
            if let name = guest["name"] as? String, let total = guest["total"] as? Int { result[name] = total }
        }
        return result
    }

    /// The by-guest rows of the last jsonl record of a log taken while `work` ran (a log, not
    /// `-1`: its one second may end before a loaded machine has run the work).
    private func rowsAfter(_ work: () throws -> Void) throws -> [String: Int] {
        let log = try BackgroundKvmstat(["-l", "-s", "0.2", "--by-guest", "--format", "jsonl", "-f", "^kvm_pio$"])
        log.waitUntilCounting()
        try work()
        usleep(600_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout.split(separator: "\n").last.map(guestRows) ?? [:]
    }

    /// A guest moved to another cgroup of its own (and its old one removed) while counted:
    /// what it counted stays in its row, and what it does after the move is counted in it too.
    @Test func aGuestMovedToAnotherCGroupKeepsItsRow() throws {
        let tag = "\(getpid())-\(UUID().uuidString.prefix(6))"
        let guest = try WorkloadProcess(vcpus: 2, iterations: 1_000, name: "bg-moved-\(tag)")
        var first: TestCGroup? = try TestCGroup("bgmove1")
        try first!.add(guest.pid)
        let second = try TestCGroup("bgmove2")
        let log = try BackgroundKvmstat(["-l", "-s", "0.2", "--by-guest", "--format", "jsonl", "-f", "^kvm_pio$"])
        log.waitUntilCounting()
        func row(_ text: String) -> Int? { text.split(separator: "\n").last.flatMap { guestRows($0)["bg-moved-\(tag)"] } }
        try guest.run()
        #expect(log.waitForOutput { row($0) == 2 * 1_000 * 2 }, "counted through its first cgroup")
        try second.add(guest.pid)
        first = nil
        #expect(log.waitForLines(log.linesSoFar + 2))
        try guest.run()
        #expect(log.waitForOutput { row($0) == 2 * 2 * 1_000 * 2 }, "counted after the move, nothing lost from its row")
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        _ = first
    }

    @Test func exactCountsPerGuestAndTheRestInOneRow() throws {
        let tag = "\(getpid())-\(UUID().uuidString.prefix(6))"
        let a = try WorkloadProcess(vcpus: 2, iterations: 2_000, name: "bg-a-\(tag)")
        let b = try WorkloadProcess(vcpus: 1, iterations: 3_000, name: "bg-b-\(tag)")
        // Not in a cgroup of its own (the root's): counted in the rest's row.
        let c = try WorkloadProcess(vcpus: 1, iterations: 1_000, name: "bg-c-\(tag)")
        let cgroupA = try TestCGroup("bga")
        let cgroupB = try TestCGroup("bgb")
        try cgroupA.add(a.pid)
        try cgroupB.add(b.pid)
        let counts = try rowsAfter {
            try a.run()
            try b.run()
            try c.run()
        }
        #expect(counts["bg-a-\(tag)"] == 2 * 2_000 * 2, "\(counts)")
        #expect(counts["bg-b-\(tag)"] == 2 * 3_000, "\(counts)")
        #expect(counts["bg-c-\(tag)"] == nil)
        #expect((counts["(host, guests sharing a cgroup)"] ?? 0) >= 2 * 1_000, "\(counts)")
        // Batch mode's rows are labelled with name and pid.
        let batch = try run(kvmstatBinary, ["-1", "--by-guest", "-f", "^kvm_pio$"])
        #expect(rows(batch.stdout)["bg-a-\(tag) (pid \(a.pid))"] != nil, "\(batch.stdout)")
    }

    /// Two guests in one cgroup cannot be told apart: both are in the rest's row.
    @Test func guestsSharingACGroupAreInTheRestsRow() throws {
        let tag = "\(getpid())-\(UUID().uuidString.prefix(6))"
        let a = try WorkloadProcess(vcpus: 1, iterations: 1_000, name: "sh-a-\(tag)")
        let b = try WorkloadProcess(vcpus: 1, iterations: 1_000, name: "sh-b-\(tag)")
        let cgroup = try TestCGroup("shared")
        try cgroup.add(a.pid)
        try cgroup.add(b.pid)
        let counts = try rowsAfter {
            try a.run()
            try b.run()
        }
        #expect(counts["sh-a-\(tag)"] == nil && counts["sh-b-\(tag)"] == nil, "\(counts)")
        #expect((counts["(host, guests sharing a cgroup)"] ?? 0) >= 4_000, "\(counts)")
    }

    /// A guest that starts after kvmstat is found at the next sample and counted from there;
    /// one that quits leaves its row and its count goes to the quit guests' row.
    @Test func guestsThatComeAndGo() throws {
        let tag = "\(getpid())-\(UUID().uuidString.prefix(6))"
        let log = try BackgroundKvmstat(["-l", "-s", "0.2", "--by-guest", "--format", "jsonl", "-f", "^kvm_pio$"])
        log.waitUntilCounting()
        let late = try WorkloadProcess(vcpus: 2, iterations: 1_500, name: "late-\(tag)")
        let cgroup = try TestCGroup("late")
        try cgroup.add(late.pid)
        usleep(600_000)
        try late.run()
        usleep(500_000)
        late.stop()
        usleep(600_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let records = result.stdout.split(separator: "\n").map(guestRows)
        let seen = records.compactMap { $0["late-\(tag)"] }
        #expect(seen.last == 2 * 1_500 * 2, "\(seen)")
        // After it quit: no row of its own, its count kept in the quit guests' row.
        #expect(records.last?["late-\(tag)"] == nil, "\(records.last ?? [:])")
        #expect((records.last?["(guests that have quit)"] ?? 0) >= 2 * 1_500 * 2, "\(records.last ?? [:])")
    }

    /// Guests × CPUs × fields events under a descriptor limit that cannot be raised (no
    /// CAP_SYS_RESOURCE, as in a container): one line naming the number needed and `-f`; a
    /// narrower filter fits.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
                   && FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit")))
    func descriptorLimitIsNamedWithAWayOut() throws {
        let guest = try WorkloadProcess(vcpus: 1, iterations: 10, name: "nofile-\(getpid())")
        let cgroup = try TestCGroup("nofile")
        try cgroup.add(guest.pid)
        let limited = ["/usr/bin/prlimit", "--nofile=120:120", "/usr/bin/setpriv", "--inh-caps=-sys_resource",
                       "--bounding-set=-sys_resource", kvmstatBinary, "-1", "--by-guest"]
        let refused = try run(limited[0], Array(limited.dropFirst()))
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        #expect(refused.stderr.hasPrefix("kvmstat: NOFILE rlimit could not be raised to "), "\(refused.stderr)")
        #expect(refused.stderr.contains("narrower -f filter") && refused.stderr.split(separator: "\n").count == 1)
        let narrow = try run(limited[0], Array(limited.dropFirst()) + ["-f", "^kvm_pio$"])
        #expect(narrow.status == 0 && narrow.stdout.contains("nofile-\(getpid()) (pid \(guest.pid))"),
                "\(narrow.stdout)\(narrow.stderr)")
    }

    @Test func optionsThatCannotCountByGuest() throws {
        let log = try run(kvmstatBinary, ["-l", "--by-guest"])
        #expect(log.status == 2 && log.stderr.contains("--by-guest logs need --format jsonl"), "\(log.stderr)")
        let prometheus = try run(kvmstatBinary, ["-1", "--by-guest", "--format", "prometheus"])
        #expect(prometheus.status == 2 && prometheus.stderr.contains("labels every guest's series itself"), "\(prometheus.stderr)")
        // Two sources' rows for one guest could not be added up: one source at a time.
        let two = try run(kvmstatBinary, ["-1", "--by-guest", "-t", "-d"])
        #expect(two.status == 1 && two.stderr.contains("come from one source at a time"), "\(two.stderr)")
        let screen = try run(kvmstatBinary, ["--by-guest"])
        #expect(screen.status == 2 && screen.stderr.contains("the screen has 'b'"), "\(screen.stderr)")
    }
}

/// `b` on the screen with tracepoints: guests by name, and the rest's row.
@Suite(.enabled(if: (Kernel.required || (Kernel.available && TestCGroup.available))
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"),
                "needs real KVM, a writable cgroup v2 and tmux"))
struct ByGuestTracepointScreenTests {
    @Test func guestsOnTheScreen() throws {
        let name = "scr-\(getpid())-\(UUID().uuidString.prefix(6))"
        let guest = try WorkloadProcess(vcpus: 1, iterations: 100_000, name: name)
        let cgroup = try TestCGroup("screen")
        try cgroup.add(guest.pid)
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' -f '^kvm_pio$' -s 0.5")
        #expect(tmux.wait(for: "kvm_pio") != nil, "\(tmux.screen())")
        tmux.send("b")
        #expect(tmux.wait(for: "Guest Name") != nil, "\(tmux.screen())")
        try guest.run()
        #expect(tmux.wait(timeout: 10) { $0.contains { $0.hasPrefix(" \(name) ") } } != nil, "\(tmux.screen())")
        tmux.send("q")
        #expect(tmux.wait(for: "EXIT=0") != nil)
    }
}
