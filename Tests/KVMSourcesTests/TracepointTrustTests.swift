import Foundation
import KVMCore
@testable import KVMSources
import KVMTestSupport
import Testing

/// The tracepoint source on the unlucky paths of a real host: guests busy before counting
/// starts, threads that come and go while their groups are opened.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct TracepointTrustTests {
    static let parent = "kvm_userspace_exit"
    /// The reasons the workload can cause: its `out`s and `hlt`s, and the signal-caused exit
    /// of a vCPU that SIGSTOP takes out of the guest.
    static let possible: Set<String> = ["IO", "HLT", "INTR"]

    /// Every child counts only what its filter selects, and the parent equals the sum of its
    /// children (read while the guest is stopped, so no exit is half counted).
    private func expectNoPhantoms(_ counts: [EventID: UInt64], _ context: Comment) {
        var sum: UInt64 = 0
        for (key, value) in counts {
            let field = key
            guard field.parent == Self.parent else { continue }
            let reason = String(field.name.dropFirst(Self.parent.count + 1).dropLast())
            if !Self.possible.contains(reason) {
                #expect(value == 0, "\(context): phantom \(field.name) \(value)")
            }
            sum += value
        }
        #expect(counts[EventID(Self.parent)] != nil && counts[EventID(Self.parent)] == sum,
                "\(context): parent \(counts[EventID(Self.parent)] ?? 0) vs children \(sum)")
        #expect((counts[EventID(Self.parent)] ?? 0) > 0, "\(context): the busy guest was counted")
    }

    /// Opens the source while the guest is busy, lets it count, then stops the guest and reads.
    private func readWhileBusy(_ workload: WorkloadProcess, _ source: TracepointSource) throws -> [EventID: UInt64] {
        usleep(200_000)
        workload.pause()
        defer { workload.resume() }
        usleep(50_000)
        return try source.read(byGuest: false).values
    }

    @Test(arguments: [true, false])
    func busyGuestShowsNoPhantomExitReasons(byPid: Bool) throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 5000, extra: ["--loop", "0"])
        defer { workload.stop() }
        usleep(100_000)  // busy before kvmstat starts
        let filter = #"kvm_userspace_exit"#
        let source = try TracepointSource(configuration: try realConfiguration(
            pid: byPid ? Int(workload.pid) : 0, filter: filter))
        defer { source.close() }
        // System-wide, other tests' guests count too; only a stopped guest is exact.
        if byPid {
            expectNoPhantoms(try readWhileBusy(workload, source), "opened while busy")
        } else {
            let counts = try readWhileBusy(workload, source)
            for (key, value) in counts where key.parent == Self.parent {
                let reason = String(key.name.dropFirst(Self.parent.count + 1).dropLast())
                if !Self.possible.contains(reason) { #expect(value == 0, "phantom \(key) \(value)") }
            }
        }
        // A filter change reopens nothing that is already open but starts counting again;
        // widening it opens new members in running groups.
        try source.updateFields(try FieldFilter("kvm_pio|kvm_userspace_exit"))
        if byPid {
            let widened = try readWhileBusy(workload, source)
            expectNoPhantoms(widened, "after the filter changed")
            #expect((widened["kvm_pio"] ?? 0) > 0)
            try source.reset()
            expectNoPhantoms(try readWhileBusy(workload, source), "after a reset")
        }
    }

    @Test func newThreadOfABusyGuestShowsNoPhantomExitReasons() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 5000)
        let source = try TracepointSource(configuration: try realConfiguration(
            pid: Int(workload.pid), filter: "kvm_userspace_exit"))
        defer { source.close() }
        try workload.addVCPUs(2)
        // The new threads' groups are opened by this read while nothing runs; then run and
        // open the groups of two more threads while the first ones are busy.
        _ = try source.read(byGuest: false).values
        nonisolated(unsafe) let busy = workload
        let running = Thread { try? busy.run() }
        running.start()
        usleep(20_000)
        _ = try source.read(byGuest: false).values
        while running.isExecuting { usleep(10_000) }
        usleep(100_000)
        expectNoPhantoms(try source.read(byGuest: false).values, "threads added")
    }

    /// QEMU-like churn: a thread every 20 ms living 12 ms, while 2 vCPUs do known work. Groups
    /// of gone threads are retired (descriptors stay flat), a thread gone while its group
    /// opens is no error, and the vCPUs' counts are exact.
    @Test func threadChurnKeepsDescriptorsFlatAndCountsExact() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 1000,
                                           extra: ["--churn", "20:12"])
        let source = try TracepointSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        defer { source.close() }
        let before = try source.read(byGuest: false).values
        // The source's own descriptors: other tests in this process open theirs meanwhile.
        let baseline = source.descriptorCount
        var peak = baseline
        var runs = 0
        for round in 0..<60 {
            if round % 15 == 0 {
                try workload.run()
                runs += 1
            }
            usleep(50_000)
            _ = try source.read(byGuest: false).values
            peak = max(peak, source.descriptorCount)
        }
        let after = try source.read(byGuest: false).values
        func delta(_ key: EventID) -> UInt64 { (after[key] ?? 0) - (before[key] ?? 0) }
        let iterations = UInt64(runs * 2 * 1000)
        #expect(delta(EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit")) == iterations)
        #expect(delta(EventID("kvm_userspace_exit(IO)", parent: "kvm_userspace_exit")) == 2 * iterations)
        #expect(delta("kvm_pio") == 2 * iterations)
        // A group is one descriptor per field and a task-clock; at most a few churning
        // threads are alive at any sample. Without retiring, ~60 samples leak dozens of groups.
        let group = source.availableFields().count + 1
        #expect(peak - baseline <= 4 * group, "descriptors grew from \(baseline) to \(peak)")
    }
}
