import Foundation
import KVMArchARM64
import KVMArchPPC
import KVMArchS390
import KVMArchX86
import KVMCore
import Testing

import KVMBuiltins

/// The registry exactly as the executable fills it: the one registration list.
func builtinRegistry() -> ArchitectureRegistry { Builtins.plugins.architectures }

@Suite struct RegistryTests {
    let registry = builtinRegistry()

    @Test func namesAreTheOnesUsersType() {
        // The built-ins in registration order; an architecture added later only adds names.
        #expect(Array(registry.names.prefix(6)) == ["x86", "x86/vmx", "x86/svm", "arm64", "ppc", "s390"])
        #expect(Set(registry.names).count == registry.names.count, "names are unique")
        for name in registry.names { #expect(registry.architecture(named: name)?.name == name) }
        #expect(registry.architecture(named: "mips") == nil)
        #expect(registry.architecture(named: "x86/") == nil)
    }

    @Test func valuesAsTheReferenceStatesThem() throws {
        let vmx = try #require(registry.architecture(named: "x86/vmx"))
        #expect(vmx.perfEventOpenSyscall == 298)
        #expect(vmx.exitReasonField == "exit_reason")
        #expect(vmx.bpfSyscall == 321)
        #expect(vmx.perfIoctls == PerfIoctls(setFilter: 0x4008_2406, enable: 0x2400,
                                             disable: 0x2401, reset: 0x2403, setBPF: 0x4004_2408))
        let svm = try #require(registry.architecture(named: "x86/svm"))
        #expect(svm.exitReasons.first { $0.name == "HLT" }?.value == 0x78)
        let plain = try #require(registry.architecture(named: "x86"))
        #expect(plain.exitReasons.isEmpty && !plain.hasExitReasonChildren)

        let arm = try #require(registry.architecture(named: "arm64"))
        #expect(arm.perfEventOpenSyscall == 241 && arm.exitReasonField == "esr_ec" && arm.bpfSyscall == 280)
        #expect(arm.perfIoctls == .generic)

        let ppc = try #require(registry.architecture(named: "ppc"))
        #expect(ppc.perfEventOpenSyscall == 319 && ppc.exitReasonField == "exit_nr")
        #expect(ppc.exitReasons.isEmpty && !ppc.hasExitReasonChildren)
        #expect(ppc.bpfSyscall == 361)
        #expect(ppc.perfIoctls == PerfIoctls(setFilter: 0x8008_2406, enable: 0x2000_2400,
                                             disable: 0x2000_2401, reset: 0x2000_2403, setBPF: 0x8004_2408))

        let s390 = try #require(registry.architecture(named: "s390"))
        #expect(s390.perfEventOpenSyscall == 331 && s390.exitReasonField == nil && s390.bpfSyscall == 351)
        #expect(s390.perfIoctls == .generic)
    }

    @Test func childRules() throws {
        let s390 = try #require(registry.architecture(named: "s390"))
        #expect(s390.debugfsParent(of: "instruction_sigp") == "exit_instruction")
        #expect(s390.debugfsParent(of: "exit_instruction") == nil)
        #expect(s390.debugfsParent(of: "exits") == nil)
        for name in ["x86/vmx", "arm64", "ppc"] {
            let arch = try #require(registry.architecture(named: name))
            #expect(arch.debugfsParent(of: "instruction_sigp") == nil)
            #expect(arch.tracepointParent(of: "kvm_exit(HLT)") == "kvm_exit")
            #expect(arch.tracepointParent(of: "kvm_exit") == nil)
        }
    }

    private func detect(_ host: HostFacts) throws -> Detection {
        try registry.detect(on: host)
    }

    @Test func x86DetectionOrder() throws {
        let flagVMX = try detect(HostFacts(machine: "x86_64", cpuFlags: ["fpu", "vmx"],
                                           cpuVendor: "AuthenticAMD", modules: ["kvm_amd"]))
        #expect(flagVMX.architecture.name == "x86/vmx")
        #expect(flagVMX.detectedBy.contains("cpu flag 'vmx'"))

        let flagSVM = try detect(HostFacts(machine: "x86_64", cpuFlags: ["svm"]))
        #expect(flagSVM.architecture.name == "x86/svm")

        let moduleIntel = try detect(HostFacts(machine: "x86_64", cpuVendor: "AuthenticAMD",
                                               modules: ["kvm", "kvm_intel"]))
        #expect(moduleIntel.architecture.name == "x86/vmx")
        #expect(moduleIntel.detectedBy.contains("kvm_intel"))

        let moduleAMD = try detect(HostFacts(machine: "x86_64", modules: ["kvm_amd"]))
        #expect(moduleAMD.architecture.name == "x86/svm")

        for (vendor, expected) in [("GenuineIntel", "x86/vmx"), ("AuthenticAMD", "x86/svm"),
                                   ("HygonGenuine", "x86/svm"), ("CentaurHauls", "x86")] {
            let d = try detect(HostFacts(machine: "x86_64", cpuVendor: vendor, modules: ["kvm"]))
            #expect(d.architecture.name == expected, "\(vendor)")
            #expect(d.detectedBy.contains(vendor))
        }
        let nothing = try detect(HostFacts(machine: "x86_64"))
        #expect(nothing.architecture.name == "x86")
        #expect(nothing.detectedBy.contains("no exit-reason table"))
    }

    @Test func otherMachines() throws {
        #expect(try detect(HostFacts(machine: "aarch64")).architecture.name == "arm64")
        #expect(try detect(HostFacts(machine: "ppc64le")).architecture.name == "ppc")
        #expect(try detect(HostFacts(machine: "s390x")).architecture.name == "s390")
        #expect(try detect(HostFacts(machine: "i686", cpuFlags: ["vmx"])).architecture.name
                == "x86/vmx")
        #expect(try detect(HostFacts(machine: "riscv64")).architecture.name == "riscv")
        #expect(try detect(HostFacts(machine: "loongarch64")).architecture.name == "loongarch")
        #expect(throws: ArchitectureError.self) { try detect(HostFacts(machine: "mips64")) }
        #expect(throws: ArchitectureError.self) { try detect(HostFacts(machine: "")) }
    }

    /// A fake /proc and /sys shaped like this machine: no vmx/svm flag, kvm_pvm, AMD.
    @Test func detectionFromFakeTreeLikeThisMachine() throws {
        let root = try FakeTree()
        try root.write("proc/cpuinfo", """
            processor\t: 0
            vendor_id\t: AuthenticAMD
            flags\t\t: fpu vme de pse tsc msr pae hypervisor

            processor\t: 1
            vendor_id\t: AuthenticAMD
            flags\t\t: fpu vme de pse tsc msr pae hypervisor

            """)
        try root.mkdir("sys/module/kvm")
        try root.mkdir("sys/module/kvm_pvm")
        let facts = HostFacts.read(paths: SystemPaths(root: root.path), machine: "x86_64")
        #expect(facts.cpuVendor == "AuthenticAMD")
        #expect(facts.modules == ["kvm", "kvm_pvm"])
        let d = try registry.detect(on: facts)
        #expect(d.architecture.family == "x86")
        #expect(d.architecture.name == "x86/svm")
        #expect(d.detectedBy.contains("kvm_pvm") && d.detectedBy.contains("AuthenticAMD"))
    }

    @Test func unreadableInputsNeverCrash() throws {
        let root = try FakeTree()
        let facts = HostFacts.read(paths: SystemPaths(root: root.path + "/missing"), machine: "x86_64")
        #expect(facts.cpuFlags.isEmpty && facts.cpuVendor == nil && facts.modules.isEmpty)
        #expect(try registry.detect(on: facts).architecture.name == "x86")
        try root.write("proc/cpuinfo", "garbage without colons\n\u{0}\u{1}:::\nflags")
        let junk = HostFacts.read(paths: SystemPaths(root: root.path), machine: "x86_64")
        #expect(try registry.detect(on: junk).architecture.family == "x86")
    }

    @Test func realHostDetectsWithoutCrashing() throws {
        let facts = HostFacts.read()
        guard facts.machine.hasPrefix("x86_64") else { return }
        let d = try registry.detect(on: facts)
        #expect(d.architecture.family == "x86")
        #expect(!d.detectedBy.isEmpty)
    }
}

/// A temporary directory tree removed when the test ends.
final class FakeTree {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "kvmstat-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func mkdir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: path + "/" + relative,
                                                withIntermediateDirectories: true)
    }

    func write(_ relative: String, _ content: String) throws {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try content.write(toFile: full, atomically: false, encoding: .utf8)
    }
}
