import KVMCore
@testable import KVMSources
import KVMTestSupport
import Testing

/// The tracepoint source against real KVM, watching the workload by pid so other tests'
/// VMs never leak into the counts.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct TracepointSourceTests {
    @Test func exactCountsForTwoVCPUs() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 2000)
        let source = try TracepointSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        defer { source.close() }
        let before = try source.read(byGuest: false).values
        try workload.run()
        let after = try source.read(byGuest: false).values
        func delta(_ key: EventID) -> Int { after[key].map { Int($0) - Int(before[key] ?? 0) } ?? -1 }
        #expect(delta(EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit")) == 4000)
        #expect(delta(EventID("kvm_userspace_exit(IO)", parent: "kvm_userspace_exit")) == 8000)
        #expect(delta("kvm_userspace_exit") == 12000)
        #expect(delta("kvm_pio") == 8000)
        #expect(delta(EventID("kvm_userspace_exit(MMIO)", parent: "kvm_userspace_exit")) == 0)
    }

    @Test func statsGivesTotalsAndDeltas() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 500)
        let stats = Stats(sources: [
            try TracepointSource(configuration: try realConfiguration(pid: Int(workload.pid))),
        ], pid: Int(workload.pid))
        defer { stats.close() }
        _ = try stats.read()
        try workload.run()
        var values = try stats.read().values(of: "tracepoint")
        #expect(values["kvm_pio"] == EventStat(value: 1000, delta: 1000))
        try workload.run()
        values = try stats.read().values(of: "tracepoint")
        #expect(values["kvm_pio"] == EventStat(value: 2000, delta: 1000))
        #expect(values[EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit")] == EventStat(value: 1000, delta: 500))
        try stats.reset()
        // Idle threads' groups are not re-read, but a reset must still show as zero.
        values = try stats.read().values(of: "tracepoint")
        #expect(values["kvm_pio"] == EventStat(value: 0, delta: 0))
        values = try stats.read().values(of: "tracepoint")
        #expect(values["kvm_pio"] == EventStat(value: 0, delta: 0))
        try workload.run()
        values = try stats.read().values(of: "tracepoint")
        #expect(values["kvm_pio"] == EventStat(value: 1000, delta: 1000))
    }

    @Test func filterSelectsFieldsAndTheirParents() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 300)
        let source = try TracepointSource(configuration: try realConfiguration(
            pid: Int(workload.pid), filter: #"kvm_userspace_exit\(HLT"#))
        defer { source.close() }
        try workload.run()
        let counts = try source.read(byGuest: false).values
        #expect(Set(counts.keys) == [EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit"), "kvm_userspace_exit"])
        #expect(counts[EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit")] == 300)
        #expect(counts["kvm_userspace_exit"] == 900)

        // Widening the filter opens the new fields; they count from the change on.
        try source.updateFields(try FieldFilter("kvm_pio|kvm_userspace_exit$"))
        try workload.run()
        let widened = try source.read(byGuest: false).values
        #expect(Set(widened.keys) == ["kvm_pio", "kvm_userspace_exit"])
        #expect(widened["kvm_pio"] == 600)
        // The parent was reset and re-enabled when the filter changed.
        #expect(widened["kvm_userspace_exit"] == 900)

        // Narrowing disables the rest but never the group leader.
        try source.updateFields(try FieldFilter("kvm_pio"))
        try workload.run()
        let narrowed = try source.read(byGuest: false).values
        #expect(Set(narrowed.keys) == ["kvm_pio"])
        #expect(narrowed["kvm_pio"] == 600)
    }

    @Test func threadStartedAfterCountingBeganIsCounted() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 400)
        let source = try TracepointSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        defer { source.close() }
        let before = try source.read(byGuest: false).values
        try workload.addVCPUs(1)
        #expect(workload.threads == 2)
        _ = try source.read(byGuest: false).values  // the next sample picks up the new thread
        try workload.run()
        let after = try source.read(byGuest: false).values
        #expect((after[EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit")] ?? 0)
                - (before[EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit")] ?? 0) == 800)
        #expect((after["kvm_pio"] ?? 0) - (before["kvm_pio"] ?? 0) == 1600)
    }

    @Test func changingThePidRebuildsTheGroups() throws {
        let first = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 100)
        let second = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 250)
        let source = try TracepointSource(configuration: try realConfiguration(
            pid: Int(first.pid), filter: "kvm_pio"))
        defer { source.close() }
        try first.run()
        #expect(try source.read(byGuest: false).values["kvm_pio"] == 200)
        try source.setPid(Int(second.pid))
        try first.run()
        try second.run()
        #expect(try source.read(byGuest: false).values["kvm_pio"] == 1000)
    }

    @Test func systemWideCountsIncludeTheWorkload() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 700)
        let source = try TracepointSource(configuration: try realConfiguration(pid: 0, filter: "kvm_pio"))
        defer { source.close() }
        let before = try source.read(byGuest: false).values["kvm_pio"] ?? 0
        try workload.run()
        let after = try source.read(byGuest: false).values["kvm_pio"] ?? 0
        // Other tests may run guests at the same time: at least ours.
        #expect(after - before >= 1400)
    }

}

/// Pure logic: runs on any build box, KVM or not.
@Suite struct TracepointLogicTests {
    @Test func pythonMatchSemantics() throws {
        let filter = try FieldFilter("kvm_pi")
        #expect(filter.matches("kvm_pio"))
        #expect(!filter.matches("xkvm_pio"))
        #expect(try FieldFilter("pio").matches("kvm_pio") == false)
        #expect(try FieldFilter(".*pio").matches("kvm_pio"))
        #expect(throws: FieldFilterError.self) { try FieldFilter("kvm_(") }
        #expect((try? FieldFilter("[")) == nil)
    }

    @Test func cpuListParsing() {
        #expect(TracepointCatalog.parseCPUList("0-1\n") == [0, 1])
        #expect(TracepointCatalog.parseCPUList("0,2-4,7") == [0, 2, 3, 4, 7])
        #expect(TracepointCatalog.parseCPUList("") == nil)
        #expect(TracepointCatalog.parseCPUList("3-1") == nil)
        #expect(TracepointCatalog.parseCPUList("x") == nil)
    }
}

@Suite struct RealKernelPresence {
    @Test func requiredKernelIsPresent() {
        guard Kernel.required else { return }
        #expect(Kernel.missing.isEmpty, "KVMSTAT_REQUIRE_KVM=1 but missing: \(Kernel.missing)")
    }
}
