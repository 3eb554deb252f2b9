import Foundation
import KVMTestSupport
import Testing

/// `-p` through the guest's cgroup, on the real kernel: the test workload in a cgroup of its
/// own (4 vCPU threads and its main thread: more threads than this host's CPUs, so the cgroup
/// needs fewer events), each iteration exactly 2 `kvm_pio` and 3 `kvm_userspace_exit`.
@Suite(.enabled(if: Kernel.required || (Kernel.available && TestCGroup.available),
                "needs real KVM, tracefs and a writable cgroup v2 (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"))
struct CGroupCountingTests {
    let fields = ["-f", "kvm_pio|kvm_userspace_exit$"]

    /// Counts one `run` (after `before`, which may add threads) as `-1 -p` sees it.
    private func count(_ workload: WorkloadProcess, environment: [String: String] = [:],
                       before: () throws -> Void = {}) throws -> (counts: [String: (Int, Int)], notes: String) {
        let kvmstat = try BackgroundKvmstat(["-1", "--verbose", "-p", "\(workload.pid)"] + fields,
                                            environment: environment)
        kvmstat.waitUntilCounting()
        try before()
        try workload.run()
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        return (parseBatch(result.stdout), result.stderr)
    }

    @Test func exactThroughTheCGroupWithFewerEvents() throws {
        let workload = try WorkloadProcess(vcpus: 4, iterations: 3_000)
        let cgroup = try TestCGroup("alone")
        try cgroup.add(workload.pid)
        let (counts, notes) = try count(workload)
        #expect(notes.contains("through its cgroup \(cgroup.path): one group per CPU"), "\(notes)")
        #expect(counts["kvm_pio"]?.0 == 2 * 3_000 * 4, "\(counts)")
        #expect(counts["kvm_userspace_exit"]?.0 == 3 * 3_000 * 4, "\(counts)")
    }

    /// Threads that start after kvmstat set up, and run at once: counted from their first
    /// event (per-thread counting would see them only at its next rescan).
    @Test func threadsStartedLaterCountFromTheirFirstEvent() throws {
        let workload = try WorkloadProcess(vcpus: 4, iterations: 2_000)
        let cgroup = try TestCGroup("later")
        try cgroup.add(workload.pid)
        let (counts, notes) = try count(workload) { try workload.addVCPUs(4) }
        #expect(notes.contains("through its cgroup"), "\(notes)")
        #expect(counts["kvm_pio"]?.0 == 2 * 2_000 * 8, "\(counts)")
    }

    /// Two processes in one cgroup: counting the cgroup would count both, so kvmstat counts
    /// the watched one's threads, still exactly.
    @Test func sharedCGroupFallsBackToThreads() throws {
        let workload = try WorkloadProcess(vcpus: 4, iterations: 1_500)
        let neighbour = try WorkloadProcess(vcpus: 1, iterations: 10, extra: ["--loop", "0"])
        let cgroup = try TestCGroup("shared")
        try cgroup.add(workload.pid)
        try cgroup.add(neighbour.pid)
        let (counts, notes) = try count(workload)
        #expect(notes.contains("one group per thread") && notes.contains("holds other processes too"), "\(notes)")
        #expect(counts["kvm_pio"]?.0 == 2 * 1_500 * 4, "\(counts)")
    }

    /// A host without a usable cgroup v2 (simulated: KVMSTAT_CGROUP2=none) counts per thread.
    @Test func noCGroupHierarchyFallsBackToThreads() throws {
        let workload = try WorkloadProcess(vcpus: 4, iterations: 1_500)
        let cgroup = try TestCGroup("nohier")
        try cgroup.add(workload.pid)
        let (counts, notes) = try count(workload, environment: ["KVMSTAT_CGROUP2": "none"])
        #expect(notes.contains("no cgroup v2 hierarchy is mounted"), "\(notes)")
        #expect(counts["kvm_pio"]?.0 == 2 * 1_500 * 4, "\(counts)")
    }

    /// Fewer threads than CPUs: per-thread groups need fewer events, so they stay.
    @Test func fewThreadsKeepPerThreadGroups() throws {
        let workload = try WorkloadProcess(vcpus: 1, iterations: 1_000)
        let cgroup = try TestCGroup("few")
        try cgroup.add(workload.pid)
        let (counts, notes) = try count(workload)
        if ProcessInfo.processInfo.activeProcessorCount > 2 {
            #expect(notes.contains("need fewer events than"), "\(notes)")
        }
        #expect(counts["kvm_pio"]?.0 == 2 * 1_000, "\(counts)")
    }

    /// Another process joining the cgroup while kvmstat counts through it: said once, and
    /// counting goes on per thread with nothing lost, counted twice, or counted of the other.
    @Test func processJoiningTheCGroupSwitchesToThreads() throws {
        let workload = try WorkloadProcess(vcpus: 4, iterations: 1_000)
        let cgroup = try TestCGroup("joined")
        try cgroup.add(workload.pid)
        let log = try BackgroundKvmstat(["-l", "-s", "0.2", "--format", "jsonl", "-p", "\(workload.pid)"] + fields)
        log.waitUntilCounting()
        try workload.run()
        usleep(400_000)
        // The intruder is idle until kvmstat has noticed it (a sample later); what it does then
        // is not the watched process's. (Events of a process that joins are counted until the
        // next sample notices it: README.)
        let intruder = try WorkloadProcess(vcpus: 2, iterations: 1_000)
        try cgroup.add(intruder.pid)
        usleep(600_000)
        try intruder.run()
        try workload.run()
        usleep(500_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0)
        #expect(result.stderr.components(separatedBy: "joined cgroup").count - 1 == 1, "\(result.stderr)")
        let totals = jsonTotals(result.stdout, "kvm_pio")
        #expect(totals.last == 2 * 2 * 1_000 * 4, "\(totals)")
    }

    /// The watched process moved to another cgroup (and its old one removed) while kvmstat
    /// counts through it: said once at the next sample, and counting goes on per thread —
    /// what it did before and after the move is counted, nothing is counted twice.
    @Test func processMovedOutOfItsCGroupIsStillCounted() throws {
        let workload = try WorkloadProcess(vcpus: 4, iterations: 1_000)
        var cgroup: TestCGroup? = try TestCGroup("moved")
        try cgroup!.add(workload.pid)
        let other = try TestCGroup("moved-to")
        let log = try BackgroundKvmstat(["-l", "-s", "0.2", "--format", "jsonl", "-p", "\(workload.pid)"] + fields)
        log.waitUntilCounting()
        try workload.run()
        #expect(log.waitForOutput { jsonTotals($0, "kvm_pio").last == 2 * 1_000 * 4 }, "counted through the cgroup")
        try other.add(workload.pid)
        cgroup = nil  // removed
        // The next sample notices; the run after it is counted per thread.
        #expect(log.waitForLines(log.linesSoFar + 2))
        try workload.run()
        #expect(log.waitForOutput { jsonTotals($0, "kvm_pio").last == 2 * 2 * 1_000 * 4 }, "counted after the move")
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0)
        #expect(result.stderr.components(separatedBy: "left cgroup").count - 1 == 1, "\(result.stderr)")
        #expect(jsonTotals(result.stdout, "kvm_pio").last == 2 * 2 * 1_000 * 4)
        _ = cgroup
    }

    /// A wider filter on the screen while counting through the cgroup: the groups are opened
    /// anew for the cgroup (its descriptor is not kept), and count.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux")))
    func filterChangeWhileCountingThroughTheCGroup() throws {
        let workload = try WorkloadProcess(vcpus: 4, iterations: 50_000)
        let cgroup = try TestCGroup("filter")
        try cgroup.add(workload.pid)
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' -p \(workload.pid) -f '^kvm_pio$' -s 0.5")
        #expect(tmux.wait(for: "kvm statistics - pid \(workload.pid)") != nil, "\(tmux.screen())")
        tmux.send("f")
        tmux.type("kvm_pio|kvm_userspace_exit$")
        try workload.run()
        #expect(tmux.wait(timeout: 10) { $0.contains { $0.hasPrefix(" kvm_userspace_exit ") } } != nil, "\(tmux.screen())")
        tmux.send("q")
        #expect(tmux.wait(for: "EXIT=0") != nil, "\(tmux.screen())")
    }
}
