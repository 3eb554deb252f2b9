import KVMCore

/// PowerPC KVM: `kvm_exit` has `exit_nr` but kvmstat has no table naming its values, so there
/// are no per-reason child events. The ioctls use PowerPC's _IOC encoding (direction bits
/// 0x2/0x4 in the top three bits), and SET_FILTER's size field is the pointer size.
public struct PPCArchitecture: Architecture, ArchitectureFamily {
    public init() {}

    public var family: String { "ppc" }
    public var variant: String? { nil }
    public var machinePrefixes: [String] { ["ppc"] }
    public var architectures: [any Architecture] { [self] }

    public var perfEventOpenSyscall: Int { 319 }
    public var perfIoctls: PerfIoctls {
        PerfIoctls(
            setFilter: 0x8000_2406 | UInt(MemoryLayout<UnsafeRawPointer>.size) << 16,
            enable: 0x2000_2400, disable: 0x2000_2401, reset: 0x2000_2403, setBPF: 0x8004_2408)
    }
    public var bpfSyscall: Int { 361 }
    public var exitReasonField: String? { "exit_nr" }
}
