import Foundation
import KVMArchX86
import KVMCore
@testable import KVMSources
import KVMTestSupport
import Testing

/// The debugfs source on what real hosts do to it: no VM yet, VM directories re-created under
/// the same name, files that appear late, a module reload, instant values, numbers at the
/// limits of u64 and beyond, and VMs by the thousand. A fake tree where the kernel here cannot
/// show it (under lockdown it refuses every counter).
@Suite struct DebugfsTrustTests {
    @Test func startedWithNoVMReportsEveryFieldFromTheStart() throws {
        let tree = try FakeDebugfs(fields: ["exits", "halt_exits", "halt_wait_ns"])
        let source = try tree.source()
        #expect(try source.read(byGuest: false).values == ["exits": 0, "halt_exits": 0])
        try tree.set("100-5", "exits", 4)
        try tree.set("100-5", "halt_exits", 1)
        #expect(try source.read(byGuest: false).values == ["exits": 4, "halt_exits": 1])
    }

    @Test func reusedVMDirectoryNameIsANewVM() throws {
        let tree = try FakeDebugfs(fields: ["exits"])
        let source = try tree.source()
        for round in 1...3 {
            try tree.recreate("100-5", ["exits": 0])
            #expect(try source.read(byGuest: false).values["exits"] == UInt64(50 * (round - 1)))
            try tree.set("100-5", "exits", 50)
            #expect(try source.read(byGuest: false).values["exits"] == UInt64(50 * round), "VM \(round)")
        }
        // Re-created between two samples, with its old value already passed.
        try tree.recreate("100-5", ["exits": 70])
        #expect(try source.read(byGuest: false).values["exits"] == 220)
    }

    @Test func statFileAppearingAfterItsVMDirectoryCountsFromZero() throws {
        let tree = try FakeDebugfs(fields: ["exits", "halt_exits"])
        let source = try tree.source()
        try tree.set("100-5", "halt_exits", 2)  // the directory, without `exits` yet
        #expect(try source.read(byGuest: false).values == ["exits": 0, "halt_exits": 2])
        try tree.set("100-5", "exits", 7)
        #expect(try source.read(byGuest: false).values == ["exits": 7, "halt_exits": 2])
    }

    @Test func recreatedKVMDirectoryIsFollowed() throws {
        let tree = try FakeDebugfs(fields: ["exits"])
        try tree.set("100-5", "exits", 10)
        let source = try tree.source()
        try tree.set("100-5", "exits", 15)
        #expect(try source.read(byGuest: false).values["exits"] == 5)
        // Module reload: a new kvm directory; the old one (still open here) keeps its VM.
        try FileManager.default.moveItem(atPath: tree.kvm, toPath: tree.root + "/kvm.old")
        try FileManager.default.createDirectory(atPath: tree.kvm, withIntermediateDirectories: true)
        try "0\n".write(toFile: tree.kvm + "/exits", atomically: false, encoding: .utf8)
        try tree.set("100-6", "exits", 4)
        #expect(try source.read(byGuest: false).values["exits"] == 9)
        try tree.set("100-6", "exits", 6)
        #expect(try source.read(byGuest: false).values["exits"] == 11)
    }

    @Test func instantValuesAreLevelsThatDropWithTheirVM() throws {
        let tree = try FakeDebugfs(fields: ["exits", "pages_4k", "max_mmu_rmap_size"])
        try tree.makeInstant("pages_4k")
        try tree.set("100-5", "pages_4k", 300)
        try tree.set("100-5", "max_mmu_rmap_size", 9)
        try tree.set("100-5", "exits", 10)
        let stats = Stats(sources: [try tree.source()])
        // A level is what it is now, not a change since kvmstat started.
        var values = try stats.read().values(of: "debugfs")
        #expect(values["pages_4k"]?.value == 300 && values["max_mmu_rmap_size"]?.value == 9)
        #expect(values["exits"]?.value == 0)
        try tree.set("100-5", "pages_4k", 200)
        try tree.set("200-5", "pages_4k", 50)
        try tree.set("100-5", "exits", 12)
        values = try stats.read().values(of: "debugfs")
        #expect(values["pages_4k"] == EventStat(value: 250, delta: -50))
        #expect(values["exits"] == EventStat(value: 2, delta: 2))
        try tree.remove("100-5")
        values = try stats.read().values(of: "debugfs")
        #expect(values["pages_4k"] == EventStat(value: 50, delta: -200), "its VM is gone")
        #expect(values["max_mmu_rmap_size"]?.value == 0)
        #expect(values["exits"]?.value == 2, "counts stay")
        try tree.remove("200-5")
        _ = try stats.read().values(of: "debugfs")
        values = try stats.read().values(of: "debugfs")
        #expect(values["pages_4k"]?.value == 0 && values["exits"]?.value == 2)
    }

    @Test func numbersAtAndBeyondTheLimitsOfU64NeverTrap() throws {
        let tree = try FakeDebugfs(fields: ["exits", "halt_exits", "io_exits"])
        try tree.write("100-5", "exits", "18446744073709551615\n")  // 2^64 - 1
        try tree.write("100-5", "halt_exits", "9223372036854775808\n")  // 2^63
        try tree.write("100-5", "io_exits", "100\n")
        let stats = Stats(sources: [try tree.source(includePast: true)])
        var values = try stats.read().values(of: "debugfs")
        #expect(values["exits"] == EventStat(value: UInt64.max, delta: .max))
        #expect(values["halt_exits"]?.value == 1 << 63)
        // A second VM's 2^63 wraps the sum at 2^64, as the kernel's own sum does.
        try tree.write("200-5", "halt_exits", "9223372036854775808\n")
        values = try stats.read().values(of: "debugfs")
        #expect(values["halt_exits"]?.value == 0)
        // Backwards: a reset of the counter; counted from the new value, said once.
        try tree.write("100-5", "io_exits", "40\n")
        values = try stats.read().values(of: "debugfs")
        #expect(values["io_exits"] == EventStat(value: 140, delta: 40))
        // Past 2^64 (23 digits) and not a number: ignored, the last value kept, said once.
        try tree.write("100-5", "io_exits", "20037642052068966312345\n")
        #expect(try stats.read().values(of: "debugfs")["io_exits"]?.value == 140)
        try tree.write("100-5", "io_exits", "many\n")
        #expect(try stats.read().values(of: "debugfs")["io_exits"]?.value == 140)
        try tree.write("100-5", "io_exits", "30\n")
        #expect(try stats.read().values(of: "debugfs")["io_exits"]?.value == 170)
        let warnings = stats.takeWarnings()
        #expect(warnings.count == 1, "\(warnings)")
        #expect(warnings.first?.contains("io_exits") == true)
        #expect(warnings.first?.contains("went backwards") == true)
        let other = try FakeDebugfs(fields: ["exits"])
        try other.write("100-5", "exits", "20037642052068966312345\n")
        let odd = try other.source()
        #expect(try odd.read(byGuest: false).warnings == ["debugfs field exits of VM 100-5 holds no number below 2^64; "
            + "its last value is kept"])
    }

    @Test func resetCountsNothingFromBeforeItForGuestsOutOfView() throws {
        let tree = try FakeDebugfs(fields: ["exits", "halt_exits"])
        try tree.set("100-5", "exits", 10)
        try tree.set("200-5", "exits", 20)
        let source = try tree.source(pid: 100, filter: "exits")
        try tree.set("200-5", "exits", 25)  // before the reset, out of view
        try tree.set("300-5", "exits", 7)  // a VM born before the reset
        try tree.set("300-5", "halt_exits", 3)  // a field not wanted at the reset
        _ = try source.read(byGuest: false).values
        try source.reset()
        try tree.set("200-5", "exits", 26)
        try source.setPid(0)
        try source.updateFields(nil)
        #expect(try source.read(byGuest: false).values == ["exits": 0, "halt_exits": 0])
        try tree.set("200-5", "exits", 28)
        try tree.set("300-5", "halt_exits", 4)
        #expect(try source.read(byGuest: false).values == ["exits": 2, "halt_exits": 1])
    }

    @Test func bookkeepingStaysFlatOverVMChurn() throws {
        let tree = try FakeDebugfs(fields: ["exits", "pages_4k"])
        try tree.makeInstant("pages_4k")
        try tree.addProcess(7)
        let source = try tree.source()
        // 2,000 VMs of guests that have ended, and of one guest that lives on.
        for i in 0..<2_000 {
            let vm = i % 2 == 0 ? "\(10_000 + i)-5" : "7-\(i)"
            try tree.set(vm, "exits", 3)
            try tree.set(vm, "pages_4k", 100)
            _ = try source.read(byGuest: false).values
            try tree.remove(vm)
        }
        _ = try source.read(byGuest: false).values
        let counts = try source.read(byGuest: false).values
        #expect(counts == ["exits": 6_000, "pages_4k": 0])
        #expect(source.bookkeeping.vms == 0)
        #expect(source.bookkeeping.departedGuests <= 1, "only the live guest 7 is kept apart")
        try source.setPid(7)
        #expect(try source.read(byGuest: false).values["exits"] == 3_000)
    }
}

@Suite struct CraftedTracefsTests {
    /// A tracefs where a directory is named like a child event: one field of that name, an
    /// error from the kernel for the bogus tracepoint ids, never a trap.
    @Test func duplicateNamesDoNotTrap() throws {
        let root = NSTemporaryDirectory() + "kvmstat-tracefs-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: root) }
        var paths = SystemPaths(root: root)
        paths.tracing = root + "/tracing"
        try FileManager.default.createDirectory(atPath: root + "/sys/devices/system/cpu",
                                                withIntermediateDirectories: true)
        try "0\n".write(toFile: root + "/sys/devices/system/cpu/online", atomically: false, encoding: .utf8)
        for name in ["kvm_userspace_exit", "kvm_userspace_exit(HLT)", "kvm_pio"] {
            let dir = paths.kvmEvents + "/" + name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try "4294967295\n".write(toFile: dir + "/id", atomically: false, encoding: .utf8)
        }
        let configuration = SourceConfiguration(paths: paths, architecture: X86Architecture.vmx,
                                                fieldFilter: try FieldFilter("kvm_pio"))
        do {
            let source = try TracepointSource(configuration: configuration)
            let fields = source.availableFields()
            #expect(fields.filter { $0 == "kvm_userspace_exit(HLT)" }.count == 1)
            source.close()
        } catch {
            #expect(error.description.hasPrefix("perf_event_open"))
        }
    }
}

/// The same cases on the real kernel, as far as it shows them here.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct DebugfsTrustRealTests {
    @Test func recreatedVMGetsTheSameNameAndANewInode() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 10)
        let paths = try #require(Kernel.paths)
        func vms() throws -> [FileSystem.DirectoryEntry] {
            try FileSystem.listDirectory(paths.debugfsKVM).filter { $0.name.hasPrefix("\(workload.pid)-") }
        }
        let source = try DebugfsSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        let before = try vms()
        let keys = Set(try source.read(byGuest: false).values.keys)
        try workload.destroyVM()
        try workload.addVMs(1)
        let after = try vms()
        #expect(before.map(\.name) == after.map(\.name), "the test's premise: PID-FD comes back")
        #expect(before.first?.inode != after.first?.inode)
        #expect(Set(try source.read(byGuest: false).values.keys) == keys)
    }

    @Test func noVMYetStillHasEveryReadableField() throws {
        let workload = try WorkloadProcess(vms: 0, vcpus: 1, iterations: 10)
        let source = try DebugfsSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        let readable = try FileSystem.listDirectory(try #require(Kernel.paths).debugfsKVM)
            .filter { !$0.isDirectory && DebugfsSource.isCounter($0.name) }
            .filter { (try? FileSystem.readText(try #require(Kernel.paths).debugfsKVM + "/" + $0.name)) != nil }
            .map(\.name)
        #expect(!readable.isEmpty)
        #expect(Set(try source.read(byGuest: false).values.keys) == Set(readable.map { EventID($0) }))
    }
}
