import Foundation
import KVMCore
import KVMTestSupport
import Testing

/// A monitor QEMU keeps for kvmstat (`-chardev socket,id=kvmstat,... -mon chardev=kvmstat`),
/// with real QEMU guests: kvmstat stays connected to it between samples, leaves the operator's
/// monitor free, and asks that one while another kvmstat holds the reserved one.
@Suite(.serialized, .enabled(if: Kernel.required || (Kernel.available && QEMUGuest.available),
                             "needs real KVM and qemu-system-x86 (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"))
struct QMPReservedMonitorTests {
    /// Whether a monitor greets a new client within `seconds` (QEMU serves one at a time: one
    /// another client holds greets nobody else).
    static func greets(_ path: String, within seconds: Double) -> Bool {
        let deadline = Signals.monotonicNow() + seconds
        guard let client = try? UnixSocket(path: path, deadline: deadline),
              let line = try? client.readLine(deadline: deadline) else { return false }
        return String(decoding: line, as: UTF8.self).contains("\"QMP\"")
    }

    @Test func keptConnectionLeavesTheOperatorsMonitorFree() throws {
        let guest = try QEMUGuest(outs: 3_000, monitors: .both)
        try guest.waitUntilHalted()
        let reserved = try #require(guest.reservedSocket)
        #expect(Self.greets(reserved, within: 2), "free before kvmstat starts")
        let log = try BackgroundKvmstat(["--source", "qmp", "-l", "-i", "-s", "0.1", "-p", "\(guest.pid)",
                                         "--format", "jsonl", "-f", "exits$"])
        usleep(800_000)
        // Held between samples, never let go: a client waiting a second (ten samples) is not
        // greeted. Connecting for each sample would have freed it at once.
        #expect(!Self.greets(reserved, within: 1))
        // The operator's monitor is the operator's.
        #expect(try guest.command(#"{"execute": "query-status"}"#).contains("\"running\""))
        // A second kvmstat asks the operator's monitor instead, and counts the same guest.
        let second = try run(kvmstatBinary, ["--source", "qmp", "-1", "-i", "-p", "\(guest.pid)", "-f", "exits$"])
        #expect(second.status == 0 && second.stderr.isEmpty, "\(second.stderr)")
        #expect((parseBatch(second.stdout)["exits"]?.0 ?? 0) >= 3_000, "\(second.stdout)")
        // And goes on doing so, trying the held one again now and then: QEMU's monitor queues
        // one connection at most, so those attempts fill its queue, which must not be taken
        // for a connection (3 s: three tries at least).
        let log2 = try BackgroundKvmstat(["--source", "qmp", "-l", "-i", "-s", "0.1", "-p", "\(guest.pid)",
                                          "--format", "jsonl", "-f", "exits$"])
        usleep(3_500_000)
        log2.signal(SIGINT)
        let result2 = log2.finish()
        #expect(result2.status == 0 && result2.stderr.isEmpty, "\(result2.stderr)")
        let totals2 = jsonTotals(result2.stdout, "exits")
        #expect(totals2.count >= 25 && totals2.allSatisfy { $0 >= 3_000 }, "\(totals2)")
        usleep(300_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0 && !result.stderr.contains("qmp:"), "\(result.stderr)")
        let totals = jsonTotals(result.stdout, "exits")
        #expect(totals.count >= 8, "\(result.stdout)")
        #expect(totals.allSatisfy { $0 >= 3_000 } && totals == totals.sorted(), "\(totals)")
        // Let go when kvmstat ends.
        #expect(Self.greets(reserved, within: 2))
    }

    /// Stopped, the guest's monitor does not answer: the kept connection is dropped, the guest
    /// reported once and its counts kept; when it runs again kvmstat connects anew.
    @Test func aStalledKeptConnectionIsReplaced() throws {
        let guest = try QEMUGuest(outs: 2_000, monitors: .reserved)
        try guest.waitUntilHalted()
        let log = try BackgroundKvmstat(["--source", "qmp", "-l", "-i", "-s", "0.1", "-p", "\(guest.pid)",
                                         "--format", "jsonl", "-f", "exits$"])
        // Stopped once kvmstat holds its connection (records out), not after a fixed time: on
        // a loaded machine the stop could come while kvmstat first connects, which is a
        // monitor that greets nobody, not a kept connection that stalls.
        try #require(log.waitForLines(3), "kvmstat wrote no 3 records")
        kill(guest.pid, SIGSTOP)
        usleep(1_000_000)
        kill(guest.pid, SIGCONT)
        // Asked again within ten samples of falling silent (`retryEvery`), then every sample.
        usleep(2_500_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let warnings = result.stderr.split(separator: "\n").filter { $0.contains("qmp: guest") }
        // Its own connection hung up is no other client's.
        #expect(warnings.count == 1 && warnings[0].contains("no answer") && !warnings[0].contains("another client"),
                "\(result.stderr)")
        let totals = jsonTotals(result.stdout, "exits")
        #expect(totals.allSatisfy { $0 >= 2_000 } && totals == totals.sorted(), "never drops: \(totals)")
        // Connected again: the reserved monitor is held once more.
        let reserved = try #require(guest.reservedSocket)
        let again = try BackgroundKvmstat(["--source", "qmp", "-l", "-s", "0.1", "-p", "\(guest.pid)", "-f", "exits$"])
        // Looked at once its samples are out (a loaded machine may take longer than a fixed
        // wait to start it and connect).
        #expect(again.waitForLines(4), "kvmstat wrote no records")
        #expect(!Self.greets(reserved, within: 0.5))
        again.signal(SIGINT)
        #expect(again.finish().status == 0)
    }

    /// Each kept connection is a descriptor, and kvmstat leaves 256 spare over those open:
    /// under a soft limit too low it raises it (up to the hard limit, or the hard one too where
    /// it may); where it cannot, guests are connected to for each sample instead, and every
    /// guest is still counted.
    @Test(arguments: [(258, 4_096), (200, 200)])
    func keptConnectionsWithinTheOpenFilesLimit(soft: Int, hard: Int) throws {
        let guests = try (0..<3).map { _ in try QEMUGuest(outs: 200, monitors: .reserved) }
        for guest in guests { try guest.waitUntilHalted() }
        let log = try BackgroundKvmstat(["--nofile=\(soft):\(hard)", kvmstatBinary, "--source", "qmp", "-l", "-i", "-s", "0.1",
                                         "--by-guest", "--format", "jsonl", "-f", "halt_exits$"],
                                        executable: "/usr/bin/prlimit")
        // Looked at once samples are out (the connections kept by then), not after a fixed
        // second: beside other suites' guests, the first samples can take longer.
        try #require(log.waitForLines(3), "kvmstat wrote no 3 records")
        // Tried a few times: another test's kvmstat may hold a free one a moment. And for up
        // to 3 s: another suite's kvmstat reading every guest may have held one when ours
        // first asked (ours then asks it again 10 samples later).
        var free: [QEMUGuest] = []
        let settled = Date().addingTimeInterval(3)
        repeat {
            free = guests.filter { guest in (0..<3).contains { _ in Self.greets(guest.reservedSocket!, within: 0.3) } }
            if hard > soft ? free.isEmpty : free.count == 3 { break }
            usleep(200_000)
        } while Date() < settled
        // The limit as it is once the connections are kept.
        let limits = try String(contentsOfFile: "/proc/\(log.pid)/limits", encoding: .utf8)
        let now = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }?
            .split(separator: " ").dropFirst(3).first.flatMap { Int($0) } ?? 0
        // Each guest's halt counted once it was read (after another kvmstat let go of it).
        let counted = log.waitForOutput(within: 5) { text in
            let rows = (jsonRecords(text).last?["guests"] as? [[String: Any]] ?? []).filter { row in
                guests.contains { Int($0.pid) == row["pid"] as? Int }
            }
            return rows.count == 3 && rows.allSatisfy { $0["total"] as? Int == 1 }
        }
        if hard > soft {
            #expect(now > soft, "\(limits)")
            #expect(free.isEmpty, "\(free.count) of 3 not kept")
        } else if now == soft {
            #expect(free.count == 3, "\(3 - free.count) kept under a soft limit of \(now)")
        }
        log.signal(SIGINT)
        let result = log.finish()
        // Other tests' guests may run meanwhile, and their kvmstats hold our monitors a moment:
        // only other news of ours would be wrong.
        let ours = result.stderr.split(separator: "\n").filter { line in
            guests.contains { line.contains($0.name) } && !line.contains("serves another client")
        }
        #expect(result.status == 0 && ours.isEmpty, "\(result.stderr)")
        let last = try #require(jsonRecords(result.stdout).last)
        let rows = (last["guests"] as? [[String: Any]] ?? []).filter { row in
            guests.contains { Int($0.pid) == row["pid"] as? Int }
        }
        #expect(counted && rows.count == 3 && rows.allSatisfy { $0["total"] as? Int == 1 }, "\(rows)")
    }

    /// Without an operator's monitor to fall back on, a second kvmstat says why the guest
    /// is not counted (once), and ends as usual.
    @Test func aReservedMonitorHeldByAnotherIsSaidOnce() throws {
        let guest = try QEMUGuest(outs: 100, monitors: .reserved)
        try guest.waitUntilHalted()
        let holder = try BackgroundKvmstat(["--source", "qmp", "-l", "-s", "0.2", "-p", "\(guest.pid)", "-f", "exits$"])
        defer {
            holder.signal(SIGINT)
            _ = holder.finish()
        }
        usleep(600_000)
        let second = try run(kvmstatBinary, ["--source", "qmp", "-1", "-p", "\(guest.pid)", "-f", "exits$"])
        #expect(second.status == 0, "\(second.stderr)")
        let lines = second.stderr.split(separator: "\n").filter { $0.contains("qmp: guest") }
        #expect(lines.count == 1 && lines[0].contains("another client"), "\(second.stderr)")
    }
}
