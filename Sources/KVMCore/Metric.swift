/// What a source says about each kind of number it produces, so that formats, the screen and
/// the endpoint decide names, types, units and help from the description alone — never by
/// looking at a metric's name (a tracepoint called `vcpu_match_mmio` is still a tracepoint;
/// a source's `utime` is not a KVM statistic).
public struct MetricFamily: Sendable, Hashable {
    /// The event or statistic as the source names it and users pick it with `-f`
    /// (`kvm_exit`, `exits`, `halt_wait_ns`); child events (`kvm_exit(HLT)`,
    /// `exits(vcpu0)`) belong to their parent's family.
    public var name: String
    public var kind: MetricKind
    public var unit: MetricUnit
    /// One sentence for people (Prometheus's HELP).
    public var help: String
    public var origin: MetricOrigin
    /// Set when the family is one value of a label of a bigger one in exposition formats.
    public var dimension: MetricDimension?

    public init(_ name: String, kind: MetricKind, unit: MetricUnit = .events, help: String, origin: MetricOrigin,
                dimension: MetricDimension? = nil) {
        self.name = name
        self.kind = kind
        self.unit = unit
        self.help = help
        self.origin = origin
        self.dimension = dimension
    }

    /// Whether values are levels shown as they are (a gauge, a flag), not counts of events.
    public var isLevel: Bool { kind == .gauge || kind == .boolean }
}

/// A family exported as one value of a label of a bigger family, as node_exporter exports
/// CPU time (`node_cpu_seconds_total{mode="user"}`): `vcpu_guest_ns` is
/// `kvm_vcpu_seconds_total{mode="guest"}`, so one query sums or compares the modes.
public struct MetricDimension: Sendable, Hashable {
    /// The bigger family's name, as a source would name it (`vcpu_ns`).
    public let family: String
    /// The bigger family's help.
    public let help: String
    /// The labels that set this value apart within the bigger family, in order.
    public let labels: [MetricLabel]

    public init(family: String, help: String, label: String, value: String) {
        self.init(family: family, help: help, labels: [MetricLabel(label, value)])
    }

    public init(family: String, help: String, labels: [MetricLabel]) {
        self.family = family
        self.help = help
        self.labels = labels
    }
}

/// One label of a series: `mode="guest"`.
public struct MetricLabel: Sendable, Hashable {
    public let name: String
    public let value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// How a family's numbers behave over time.
public enum MetricKind: String, Sendable, Hashable {
    /// Counts since kvmstat's baseline; never goes down between resets.
    case counter
    /// A current value (an instant or peak statistic): it goes down as well as up.
    case gauge
    /// Bucket counts (`Sample.histograms`), not a number per row.
    case histogram
    /// 0 or 1.
    case boolean
}

/// What one unit of a value is: `base`^`exponent` of `name` (nanoseconds: seconds, 10, -9).
/// Formats that want base units (Prometheus) scale by it; the others show the value as read.
public struct MetricUnit: Sendable, Hashable {
    /// The base unit, plural (`events`, `seconds`, `bytes`, `pages`); empty for a plain number.
    public var name: String
    public var base: Int
    public var exponent: Int

    public init(_ name: String, base: Int = 10, exponent: Int = 0) {
        self.name = name
        self.base = base
        self.exponent = exponent
    }

    public static let events = MetricUnit("events")
    public static let seconds = MetricUnit("seconds")
    public static let nanoseconds = MetricUnit("seconds", exponent: -9)
    public static let bytes = MetricUnit("bytes")
    public static let pages = MetricUnit("pages")
    public static let none = MetricUnit("")

    /// Whether a value is already in the base unit.
    public var isBase: Bool { exponent == 0 }
}

/// Where a family's numbers come from: what they mean, and so how an exporter groups them.
public enum MetricOrigin: Sendable, Hashable {
    /// A kernel tracepoint's hits (children: hits by exit reason).
    case tracepoint
    /// One of KVM's own statistics (debugfs files, binary statistics through QEMU or
    /// libvirt); children are per vCPU.
    case kvmStatistic
    /// kvmstat's own workings (samples taken), exported as `kvmstat_<name>`.
    case program
    /// The resources kvmstat's process uses, exported as every Prometheus client library
    /// exports its process's: `process_<name>`.
    case process
    /// Anything else, exported under its own namespace (`kvm_<namespace>_<name>`).
    case other(namespace: String)
}

/// A family's identity in a sample: the source that described it and its name. Two sources'
/// `exits` are two families (qmp's and libvirt's guests are different guests).
public struct FamilyKey: Sendable, Hashable {
    public var source: String
    public var name: String

    public init(source: String, name: String) {
        self.source = source
        self.name = name
    }
}
