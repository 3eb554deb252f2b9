import KVMCore

/// x86 KVM: Intel VMX and AMD SVM share the syscall and ioctls but number exits differently,
/// so each is its own form; plain `x86` (no table) is what remains when neither can be told.
public struct X86Architecture: Architecture {
    public let variant: String?
    public let exitReasons: [ExitReason]

    public var family: String { "x86" }
    public var perfEventOpenSyscall: Int { 298 }
    public var bpfSyscall: Int { 321 }
    public var perfIoctls: PerfIoctls { .generic }
    public var exitReasonField: String? { variant == nil ? nil : "exit_reason" }

    /// x86's latencies: the kernel's handling of an exit, from `kvm_exit` to the vCPU's next
    /// `kvm_entry` (perf kvm stat's "VM-EXIT" event); and the VMM's time per exit to it, from
    /// `kvm_userspace_exit` to the vCPU's next KVM_RUN, which `kvm_fpu` with `load` 1 marks
    /// (x86 loads the guest's FPU state on every entry to KVM_RUN; no other tracepoint fires
    /// there on every host — `kvm_entry` does not where the exit was handled in userspace
    /// under some KVMs, as this one's).
    public var latencyPairs: [LatencyPair] {
        var pairs = [LatencyPair(
            name: "userspace_exit_latency",
            help: "time the VMM spends in userspace per exit to it, by exit reason "
                + "(kvm_userspace_exit to the vCPU's next KVM_RUN)",
            start: "kvm_userspace_exit", reasonField: "reason", reasons: UserspaceExitReasons.table,
            end: "kvm_fpu", endCondition: .init(field: "load", value: 1))]
        if let field = exitReasonField {
            pairs.append(LatencyPair(
                name: "exit_latency",
                help: "time the kernel spends handling a VM exit, by exit reason (kvm_exit to the vCPU's next kvm_entry)",
                start: "kvm_exit", reasonField: field, reasons: exitReasons, end: "kvm_entry"))
        }
        return pairs
    }

    public static let plain = X86Architecture(variant: nil, exitReasons: [])
    public static let vmx = X86Architecture(variant: "vmx", exitReasons: VMXExitReasons.table)
    public static let svm = X86Architecture(variant: "svm", exitReasons: SVMExitReasons.table)
}

/// Registers x86 and decides between VMX and SVM on the running host.
public struct X86Family: ArchitectureFamily {
    public init() {}

    public var machinePrefixes: [String] { ["x86_64", "i386", "i486", "i586", "i686", "amd64"] }
    public var architectures: [any Architecture] {
        [X86Architecture.plain, X86Architecture.vmx, X86Architecture.svm]
    }

    /// CPU flags first (upstream's rule), then the loaded vendor module, then the CPU vendor:
    /// hosts that hide vmx/svm from the kernel's flags (nested or paravirtualized KVM) still
    /// get a table where one can be inferred, and the plain form where none can.
    public func detect(on host: HostFacts) -> Detection {
        if host.cpuFlags.contains("vmx") {
            return Detection(architecture: X86Architecture.vmx,
                             detectedBy: "cpu flag 'vmx' in /proc/cpuinfo")
        }
        if host.cpuFlags.contains("svm") {
            return Detection(architecture: X86Architecture.svm,
                             detectedBy: "cpu flag 'svm' in /proc/cpuinfo")
        }
        let noFlag = "no vmx/svm cpu flag in /proc/cpuinfo"
        if host.modules.contains("kvm_intel") {
            return Detection(architecture: X86Architecture.vmx,
                             detectedBy: "\(noFlag); module kvm_intel is loaded")
        }
        if host.modules.contains("kvm_amd") {
            return Detection(architecture: X86Architecture.svm,
                             detectedBy: "\(noFlag); module kvm_amd is loaded")
        }
        let kvmModules = host.modules.filter { $0.hasPrefix("kvm") }.sorted()
        let modules = kvmModules.isEmpty
            ? "no kvm module" : "modules " + kvmModules.joined(separator: ", ")
        let context = "\(noFlag); neither kvm_intel nor kvm_amd loaded (\(modules))"
        switch host.cpuVendor {
        case "GenuineIntel":
            return Detection(architecture: X86Architecture.vmx,
                             detectedBy: "\(context); CPU vendor GenuineIntel")
        case "AuthenticAMD", "HygonGenuine":
            return Detection(architecture: X86Architecture.svm,
                             detectedBy: "\(context); CPU vendor \(host.cpuVendor!)")
        default:
            let vendor = host.cpuVendor.map { "unknown CPU vendor \($0)" } ?? "no CPU vendor"
            return Detection(architecture: X86Architecture.plain,
                             detectedBy: "\(context); \(vendor): no exit-reason table")
        }
    }
}
