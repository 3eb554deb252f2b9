import KVMCore

/// arm64 KVM: `kvm_exit` carries the ESR exception class in `esr_ec`.
public struct ARM64Architecture: Architecture, ArchitectureFamily {
    public init() {}

    public var family: String { "arm64" }
    public var variant: String? { nil }
    public var machinePrefixes: [String] { ["aarch64", "arm64"] }
    public var architectures: [any Architecture] { [self] }

    public var perfEventOpenSyscall: Int { 241 }
    public var bpfSyscall: Int { 280 }
    public var perfIoctls: PerfIoctls { .generic }
    public var exitReasonField: String? { "esr_ec" }
    public var exitReasons: [ExitReason] { ESRExceptionClasses.table }
}
