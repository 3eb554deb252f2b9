import KVMCore

/// RISC-V KVM (perf's `kvm stat` has it; upstream kvm_stat never got it): `kvm_exit` carries
/// the trap cause in `scause`, named by the kernel's `EXC_*` constants (asm/csr.h). An
/// interrupt's cause has the top bit set and matches no child: it counts in `kvm_exit` only.
public struct RISCVArchitecture: Architecture, ArchitectureFamily {
    public init() {}

    public var family: String { "riscv" }
    public var variant: String? { nil }
    public var machinePrefixes: [String] { ["riscv64"] }
    public var architectures: [any Architecture] { [self] }

    /// The generic syscall table's.
    public var perfEventOpenSyscall: Int { 241 }
    public var bpfSyscall: Int { 280 }
    public var perfIoctls: PerfIoctls { .generic }
    public var exitReasonField: String? { "scause" }
    public var exitReasons: [ExitReason] { RISCVTrapCauses.table }
}
