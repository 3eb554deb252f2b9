import Foundation
import KVMArchS390
import KVMArchX86
import KVMCore
import KVMSources
import KVMTestSupport
import Testing

/// The debugfs source on the real kernel. Under lockdown only read-only files (pages_4k,
/// blocking, ...) can be read, and they stay 0 for this guest; counts are tested on a fake
/// tree below.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct DebugfsSourceRealTests {
    private func vmDirectories(of pid: Int32) throws -> [String] {
        let paths = try #require(Kernel.paths)
        return try FileSystem.listDirectory(paths.debugfsKVM).map(\.name)
            .filter { $0.hasPrefix("\(pid)-") }
    }

    @Test func vmDirectoriesAppearAndArePidFiltered() throws {
        let a = try WorkloadProcess(vms: 2, vcpus: 1, iterations: 10)
        let b = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 10)
        #expect(try vmDirectories(of: a.pid).count == 2)
        #expect(try vmDirectories(of: b.pid).count == 1)

        let source = try DebugfsSource(configuration: try realConfiguration(pid: Int(a.pid)))
        let byGuest = try source.read(byGuest: true).values
        #expect(Set(byGuest.keys) == [.guestTotal(Int(a.pid))])

        let all = try DebugfsSource(configuration: try realConfiguration(pid: 0))
        let guests = Set(try all.read(byGuest: true).values.keys)
        #expect(guests.isSuperset(of: [.guestTotal(Int(a.pid)), .guestTotal(Int(b.pid))]))
    }

    @Test func lockdownIsReportedOnceAndItsFieldsAreNotColumns() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 10)
        let exitsPath = try #require(Kernel.paths).debugfsKVM
            + "/" + (try vmDirectories(of: workload.pid).first ?? "") + "/exits"
        let locked: Bool
        do { _ = try FileSystem.readText(exitsPath); locked = false } catch {
            locked = error == .notPermitted
        }
        let source = try DebugfsSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        let first = try source.read(byGuest: false)
        let warnings = first.warnings
        let counts = first.values
        if locked {
            #expect(warnings.count == 1)
            let warning = try #require(warnings.first)
            #expect(warning.contains("exits") && warning.contains("lockdown") && warning.contains("-t"))
            #expect(counts["exits"] == nil, "unreadable fields are no columns of zeros")
            #expect(counts["pages_4k"] != nil, "readable fields still are")
            // Not again on the next samples, nor when a new VM makes us look again.
            var later = try source.read(byGuest: false).warnings
            try workload.addVMs(1)
            later += try source.read(byGuest: false).warnings
            let last = try source.read(byGuest: false)
            #expect((later + last.warnings).isEmpty)
            #expect(last.values["exits"] == nil)
        } else {
            #expect(warnings.isEmpty)
            #expect(counts["exits"] != nil)
        }
    }

    @Test func vmDestroyedBetweenSamples() throws {
        let workload = try WorkloadProcess(vms: 3, vcpus: 1, iterations: 10)
        let source = try DebugfsSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        let before = try source.read(byGuest: false).values
        try workload.destroyVM()
        #expect(try vmDirectories(of: workload.pid).count == 2)
        let after = try source.read(byGuest: false).values
        #expect(Set(after.keys) == Set(before.keys))
        for (key, value) in before { #expect(after[key]! >= value, "\(key) never goes back") }
        try workload.destroyVM()
        try workload.destroyVM()
        #expect(try source.read(byGuest: true).values.isEmpty)
    }

    @Test func noDebugfsFileIsHeldOpenBetweenSamples() throws {
        let workload = try WorkloadProcess(vms: 2, vcpus: 1, iterations: 10)
        let source = try DebugfsSource(configuration: try realConfiguration(pid: Int(workload.pid)))
        _ = try source.read(byGuest: false).values
        let debugfs = try #require(Kernel.paths).debugfsKVM
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)
        }
        // Only this workload's VMs: other tests in this process read theirs concurrently.
        #expect(!open.contains { $0.hasPrefix("\(debugfs)/\(workload.pid)-") })
        withExtendedLifetime(source) {}
    }
}

/// A fake `<debugfs>/kvm` for what the kernel here can't show: readable counters, s390's
/// child fields.
final class FakeDebugfs {
    let root: String
    var kvm: String { root + "/sys/kernel/debug/kvm" }

    init(fields: [String]) throws {
        root = NSTemporaryDirectory() + "kvmstat-debugfs-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: kvm, withIntermediateDirectories: true)
        for field in fields { try "0\n".write(toFile: kvm + "/" + field, atomically: false, encoding: .utf8) }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func set(_ vm: String, _ field: String, _ value: Int) throws {
        try write(vm, field, "\(value)\n")
    }

    /// Any content, e.g. a number past 2^64.
    func write(_ vm: String, _ field: String, _ text: String) throws {
        try FileManager.default.createDirectory(atPath: kvm + "/" + vm, withIntermediateDirectories: true)
        try text.write(toFile: "\(kvm)/\(vm)/\(field)", atomically: false, encoding: .utf8)
    }

    /// Replaces a VM directory by a new one of the same name (a new inode), as KVM does when
    /// a process re-creates a VM and gets the same descriptor number.
    func recreate(_ vm: String, _ values: [String: Int]) throws {
        let fresh = kvm + "/.new-" + vm
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        for (field, value) in values {
            try "\(value)\n".write(toFile: "\(fresh)/\(field)", atomically: false, encoding: .utf8)
        }
        try? FileManager.default.removeItem(atPath: kvm + "/" + vm)
        try FileManager.default.moveItem(atPath: fresh, toPath: kvm + "/" + vm)
    }

    /// Marks a host-wide statistics file as KVM marks an instant value: read-only.
    func makeInstant(_ field: String) throws {
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: kvm + "/" + field)
    }

    /// A live process of that pid in the fake /proc.
    func addProcess(_ pid: Int) throws {
        try FileManager.default.createDirectory(atPath: "\(root)/proc/\(pid)", withIntermediateDirectories: true)
    }

    func remove(_ vm: String) throws { try FileManager.default.removeItem(atPath: kvm + "/" + vm) }

    func source(pid: Int = 0, filter: String? = nil, includePast: Bool = false,
                architecture: any Architecture = X86Architecture.vmx) throws -> DebugfsSource {
        try DebugfsSource(configuration: SourceConfiguration(
            paths: SystemPaths(root: root), architecture: architecture, pid: pid,
            fieldFilter: try filter.map { try FieldFilter($0) }, includePast: includePast))
    }
}

@Suite struct DebugfsSourceFakeTreeTests {
    @Test func baselineVersusIncludePast() throws {
        let tree = try FakeDebugfs(fields: ["exits", "halt_exits", "halt_wait_ns", "halt_wait_hist"])
        try tree.set("100-5", "exits", 50)
        try tree.set("100-5", "halt_exits", 7)
        // A histogram's debugfs file reads as one number (its first bucket), as upstream lists
        // and counts it; the `_ns` sums are upstream's exempt ones.
        try tree.set("100-5", "halt_wait_hist", 3)
        let fresh = try tree.source()
        let past = try tree.source(includePast: true)
        #expect(fresh.availableFields().sorted() == ["exits", "halt_exits", "halt_wait_hist"])
        #expect(try fresh.read(byGuest: false).values == ["exits": 0, "halt_exits": 0, "halt_wait_hist": 0])
        #expect(try past.read(byGuest: false).values == ["exits": 50, "halt_exits": 7, "halt_wait_hist": 3])
        try tree.set("100-5", "exits", 80)
        #expect(try fresh.read(byGuest: false).values["exits"] == 30)
        #expect(try past.read(byGuest: false).values["exits"] == 80)
        try fresh.reset()
        try tree.set("100-5", "exits", 85)
        #expect(try fresh.read(byGuest: false).values["exits"] == 5)
    }

    @Test func pidFilterAndByGuestKeys() throws {
        let tree = try FakeDebugfs(fields: ["exits"])
        try tree.set("100-5", "exits", 1)
        try tree.set("100-9", "exits", 2)
        try tree.set("10-3", "exits", 4)
        let all = try tree.source(includePast: true)
        #expect(try all.read(byGuest: false).values == ["exits": 7])
        #expect(try all.read(byGuest: true).values == [.guestTotal(100): 3, .guestTotal(10): 4])
        // "10-" must not match "100-5" (upstream's substring test would).
        let ten = try tree.source(pid: 10, includePast: true)
        #expect(try ten.read(byGuest: false).values == ["exits": 4])
        try ten.setPid(100)
        #expect(try ten.read(byGuest: false).values == ["exits": 3])
    }

    @Test func vmsThatComeAndGo() throws {
        let tree = try FakeDebugfs(fields: ["exits"])
        try tree.set("100-5", "exits", 10)
        let source = try tree.source()
        #expect(try source.read(byGuest: false).values == ["exits": 0])
        // A VM created later counted everything while kvmstat watched.
        try tree.set("200-5", "exits", 6)
        try tree.set("100-5", "exits", 12)
        #expect(try source.read(byGuest: false).values == ["exits": 8])
        // A VM that goes away keeps what it counted: totals never drop.
        try tree.remove("100-5")
        #expect(try source.read(byGuest: false).values == ["exits": 8])
        try tree.set("200-5", "exits", 9)
        #expect(try source.read(byGuest: false).values == ["exits": 11])
        #expect(try source.read(byGuest: true).values == [.guestTotal(200): 9])
    }

    @Test func departedCountsStayWithTheirGuest() throws {
        let tree = try FakeDebugfs(fields: ["exits"])
        try tree.set("100-5", "exits", 10)
        try tree.set("200-5", "exits", 20)
        let watched = try tree.source(pid: 100, includePast: true)
        #expect(try watched.read(byGuest: false).values == ["exits": 10])
        try tree.remove("200-5")
        #expect(try watched.read(byGuest: false).values == ["exits": 10], "another guest's exit is not ours")
        try watched.setPid(0)
        #expect(try watched.read(byGuest: false).values == ["exits": 30])
        try tree.remove("100-5")
        #expect(try watched.read(byGuest: false).values == ["exits": 30])
        try watched.setPid(100)
        #expect(try watched.read(byGuest: false).values == ["exits": 10])
    }

    @Test func resetTakesTheValuesOfNow() throws {
        let tree = try FakeDebugfs(fields: ["exits"])
        try tree.set("100-5", "exits", 10)
        let source = try tree.source()
        #expect(try source.read(byGuest: false).values == ["exits": 0])
        try tree.set("100-5", "exits", 15)  // not sampled before the reset
        try source.reset()
        #expect(try source.read(byGuest: false).values == ["exits": 0])
        try tree.set("100-5", "exits", 18)
        #expect(try source.read(byGuest: false).values == ["exits": 3])
    }

    @Test func includePastCountsAVMOnlyOnce() throws {
        let tree = try FakeDebugfs(fields: ["exits"])
        try tree.set("100-5", "exits", 10)
        let source = try tree.source(includePast: true)
        #expect(try source.read(byGuest: false).values == ["exits": 10])
        // A listing that misses the VM once (it looked gone), then finds it again.
        try FileManager.default.moveItem(atPath: tree.kvm + "/100-5", toPath: tree.root + "/away")
        #expect(try source.read(byGuest: false).values == ["exits": 10])
        try FileManager.default.moveItem(atPath: tree.root + "/away", toPath: tree.kvm + "/100-5")
        #expect(try source.read(byGuest: false).values == ["exits": 10])
    }

    @Test func s390InstructionFieldsAreChildren() throws {
        let tree = try FakeDebugfs(fields: ["exit_instruction", "instruction_sigp", "instruction_stsi", "exits"])
        try tree.set("100-5", "instruction_sigp", 3)
        try tree.set("100-5", "instruction_stsi", 4)
        try tree.set("100-5", "exit_instruction", 7)
        let source = try tree.source(filter: "instruction_sigp", includePast: true,
                                     architecture: S390Architecture())
        #expect(try source.read(byGuest: false).values
                == [EventID("instruction_sigp", parent: "exit_instruction"): 3, "exit_instruction": 7])
        let x86 = try tree.source(filter: "instruction_sigp", includePast: true)
        #expect(try x86.read(byGuest: false).values == ["instruction_sigp": 3])
    }

    @Test func fieldFilterChanges() throws {
        let tree = try FakeDebugfs(fields: ["exits", "halt_exits"])
        try tree.set("100-5", "exits", 1)
        try tree.set("100-5", "halt_exits", 2)
        let source = try tree.source(filter: "halt", includePast: true)
        #expect(try source.read(byGuest: false).values == ["halt_exits": 2])
        try source.updateFields(nil)
        #expect(try source.read(byGuest: false).values == ["exits": 1, "halt_exits": 2])
    }

    @Test func unreadableKVMDirectoryIsAnErrorThatKeepsItsCause() throws {
        let tree = try FakeDebugfs(fields: [])
        try FileManager.default.removeItem(atPath: tree.kvm)
        do {
            _ = try tree.source()
            Issue.record("a missing kvm directory was accepted")
        } catch let error as SourceError {
            #expect(error.errno == .noSuchFile)
            #expect(error.operation == "cannot read \(tree.kvm)")
            #expect(error.description == "cannot read \(tree.kvm): No such file or directory")
        }
    }
}

@Suite struct GuestsTests {
    @Test func guestNameFromQEMUArguments() {
        func name(_ argv: String...) -> String { Guests.guestName(fromArguments: argv) }
        #expect(name("qemu", "-name", "vm1") == "vm1")
        #expect(name("qemu", "-name", "guest=vm2,debug-threads=on") == "vm2")
        #expect(name("qemu", "-name", "debug-threads=on,vm3,guest=other") == "vm3")
        #expect(name("qemu", "-name", "a,,b") == "a,b")
        #expect(name("qemu", "-name", "guest=x,,y,debug-threads=on") == "x,y")
        #expect(name("qemu", "-name") == "")
        #expect(name("qemu", "-m", "512") == "")
        #expect(name("qemu", "-name", "vm,") == "")
    }

    @Test(.enabled(if: Kernel.available, realKernelNeeded))
    func findsTheWorkloadByName() throws {
        let name = "kvmstat-test-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        let workload = try WorkloadProcess(iterations: 1, name: "guest=\(name),debug-threads=on")
        let guests = Guests()
        #expect(guests.name(of: Int(workload.pid)) == name)
        #expect(guests.pids(named: name) == [Int(workload.pid)])
        #expect(guests.all().contains { $0.pid == Int(workload.pid) && $0.name == name })
        #expect(guests.isRunning(Int(workload.pid)))
        workload.stop()
        #expect(guests.pids(named: name).isEmpty)
    }
}
