import KVMCore

/// LoongArch KVM (perf's `kvm stat` has it; upstream kvm_stat never got it): `kvm_exit`
/// carries the exception code `ESTAT.Ecode` in `reason`, named by the kernel's `EXCCODE_*`
/// constants (asm/loongarch.h). Idle and cache exits have tracepoints of their own
/// (`kvm_exit_idle`, `kvm_exit_cache`), counted as events beside `kvm_exit`.
public struct LoongArchArchitecture: Architecture, ArchitectureFamily {
    public init() {}

    public var family: String { "loongarch" }
    public var variant: String? { nil }
    public var machinePrefixes: [String] { ["loongarch64"] }
    public var architectures: [any Architecture] { [self] }

    /// The generic syscall table's.
    public var perfEventOpenSyscall: Int { 241 }
    public var bpfSyscall: Int { 280 }
    public var perfIoctls: PerfIoctls { .generic }
    public var exitReasonField: String? { "reason" }
    public var exitReasons: [ExitReason] { LoongArchExceptionCodes.table }
}
