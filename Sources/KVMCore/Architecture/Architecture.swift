/// One architecture's (or one x86 variant's) facts for talking to KVM's tracepoints through perf:
/// pure data plus the child-field rules. Modules such as KVMArchX86 provide these; nothing else
/// in kvmstat asks "which architecture is this?" — it asks the `Architecture` value instead.
public protocol Architecture: Sendable {
    /// Family name as typed after `--arch`, e.g. `x86`, `arm64`.
    var family: String { get }
    /// Variant within the family (`vmx`, `svm`) or nil.
    var variant: String? { get }
    /// perf_event_open(2)'s syscall number on this architecture.
    var perfEventOpenSyscall: Int { get }
    /// bpf(2)'s syscall number on this architecture (the bpf source).
    var bpfSyscall: Int { get }
    /// The perf ioctl request numbers, whose encoding differs per architecture.
    var perfIoctls: PerfIoctls { get }
    /// The `kvm_exit` tracepoint field that carries the exit reason, or nil (no per-reason events).
    var exitReasonField: String? { get }
    /// Exit reasons by value for `kvm_exit(REASON)` child events; empty when there is none.
    var exitReasons: [ExitReason] { get }
    /// The parent of a tracepoint field, e.g. `kvm_exit` for `kvm_exit(HLT)`; nil for a parent.
    func tracepointParent(of field: String) -> String?
    /// The parent of a debugfs field, e.g. s390's `instruction_*` under `exit_instruction`.
    func debugfsParent(of field: String) -> String?
    /// One line saying what the two child rules are, for `--arch-info`.
    var childRuleSummary: String { get }
    /// Pairs of tracepoints on one thread whose distance is a latency worth timing (the bpf
    /// source's histograms): exit handling in the kernel, the VMM's time per userspace exit.
    var latencyPairs: [LatencyPair] { get }
}

/// Two tracepoints on the same thread: the time from a hit of `start` to the thread's next
/// hit of `end` (that satisfies `endCondition`) is one latency, filed under the start's
/// reason (the value of `reasonField`, named by `reasons`).
public struct LatencyPair: Sendable, Equatable {
    /// The histogram's name (`userspace_exit_latency`); its children carry the reasons.
    public let name: String
    public let help: String
    public let start: String
    public let reasonField: String?
    public let reasons: [ExitReason]
    public let end: String
    /// A field of `end`'s record and the value it must have (`kvm_fpu`'s `load` == 1).
    public let endCondition: EndCondition?

    public struct EndCondition: Sendable, Equatable {
        public let field: String
        public let value: Int

        public init(field: String, value: Int) {
            self.field = field
            self.value = value
        }
    }

    public init(name: String, help: String, start: String, reasonField: String?, reasons: [ExitReason],
                end: String, endCondition: EndCondition? = nil) {
        self.name = name
        self.help = help
        self.start = start
        self.reasonField = reasonField
        self.reasons = reasons
        self.end = end
        self.endCondition = endCondition
    }
}

extension Architecture {
    /// The name users type after `--arch`: `x86/vmx`, `arm64`.
    public var name: String { variant.map { "\(family)/\($0)" } ?? family }

    public var exitReasonField: String? { nil }
    public var exitReasons: [ExitReason] { [] }

    /// Upstream's rule on every architecture: `event(SUB)` is a child of `event`.
    public func tracepointParent(of field: String) -> String? {
        FieldName.tracepointParent(of: field)
    }

    public func debugfsParent(of field: String) -> String? { nil }

    public var childRuleSummary: String {
        "tracepoint: EVENT(SUB) is a child of EVENT; debugfs: no child fields"
    }

    /// None known: an architecture names its own.
    public var latencyPairs: [LatencyPair] { [] }

    /// `kvm_exit` child events exist only where there is both a field and a table to name values.
    public var hasExitReasonChildren: Bool { exitReasonField != nil && !exitReasons.isEmpty }
}

/// An architecture family as it registers itself: the `uname -m` prefixes it claims, every form
/// `--arch` can name, and how to pick the form for the running host.
public protocol ArchitectureFamily: Sendable {
    /// `uname -m` prefixes, e.g. `x86_64`, `i686` or `ppc`.
    var machinePrefixes: [String] { get }
    /// Every selectable form; the first is the family's plain form.
    var architectures: [any Architecture] { get }
    /// Picks the form for this host and says how it decided. Never fails: a family that
    /// claims the machine always has a plain form to fall back to.
    func detect(on host: HostFacts) -> Detection
}

extension ArchitectureFamily {
    public func detect(on host: HostFacts) -> Detection {
        Detection(architecture: architectures[0], detectedBy: "uname -m is '\(host.machine)'")
    }
}

/// The perf ioctl request numbers kvmstat uses.
public struct PerfIoctls: Sendable, Equatable {
    public var setFilter: UInt
    public var enable: UInt
    public var disable: UInt
    public var reset: UInt
    /// PERF_EVENT_IOC_SET_BPF, `_IOW('$', 8, __u32)`: attaches a BPF program to a tracepoint.
    public var setBPF: UInt

    public init(setFilter: UInt, enable: UInt, disable: UInt, reset: UInt, setBPF: UInt) {
        self.setFilter = setFilter
        self.enable = enable
        self.disable = disable
        self.reset = reset
        self.setBPF = setBPF
    }

    /// The asm-generic _IO/_IOW encodings (x86, arm64, s390).
    public static let generic = PerfIoctls(
        setFilter: 0x4008_2406, enable: 0x2400, disable: 0x2401, reset: 0x2403, setBPF: 0x4004_2408)

    /// Name → request pairs in upstream's order (then kvmstat's own), for reports.
    public var named: [(name: String, value: UInt)] {
        [("SET_FILTER", setFilter), ("ENABLE", enable), ("DISABLE", disable), ("RESET", reset), ("SET_BPF", setBPF)]
    }
}

/// One named exit-reason value, as found in a kernel header.
public struct ExitReason: Sendable, Equatable, Hashable {
    public let name: String
    public let value: Int

    public init(_ name: String, _ value: Int) {
        self.name = name
        self.value = value
    }
}

/// The outcome of detection: which architecture, and a sentence saying why.
public struct Detection: Sendable {
    public let architecture: any Architecture
    public let detectedBy: String

    public init(architecture: any Architecture, detectedBy: String) {
        self.architecture = architecture
        self.detectedBy = detectedBy
    }
}
