import KVMCore

/// s390 KVM: no exit-reason field on `kvm_exit`, but debugfs splits `exit_instruction` into
/// one `instruction_*` file per intercepted instruction, which are its children.
public struct S390Architecture: Architecture, ArchitectureFamily {
    public init() {}

    public var family: String { "s390" }
    public var variant: String? { nil }
    public var machinePrefixes: [String] { ["s390"] }
    public var architectures: [any Architecture] { [self] }

    public var perfEventOpenSyscall: Int { 331 }
    public var bpfSyscall: Int { 351 }
    public var perfIoctls: PerfIoctls { .generic }

    public func debugfsParent(of field: String) -> String? {
        field.hasPrefix("instruction_") ? "exit_instruction" : nil
    }

    public var childRuleSummary: String {
        "tracepoint: EVENT(SUB) is a child of EVENT; debugfs: instruction_* is a child of exit_instruction"
    }
}
